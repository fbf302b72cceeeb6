//! The `object_store` implementation of [`Backend`].

use super::{Backend, ObjectInfo, StoreError};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Options for opening a location, beyond its URL. Credentials not given here come from
/// the environment (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_…`).
#[derive(Debug, Clone, Default)]
pub struct LocationOptions {
    /// S3-compatible endpoint (`http://127.0.0.1:8333`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Further credentials, named as their environment variables (see [`CREDENTIAL_KEYS`]):
    /// a location's credentials Secret, read by this process as a mover Pod reads it from
    /// its environment.
    pub settings: Vec<(String, String)>,
    /// Create a missing `file://` directory (only `init` does).
    pub create: bool,
    /// PEM bundle of CA certificates to trust (besides the system's) for an HTTPS endpoint.
    pub ca_bundle: Option<Vec<u8>>,
    /// Accept any server certificate. For tests only.
    pub insecure_skip_verify: bool,
    /// Nothing from this process's own identity (environment variables, web identity,
    /// instance metadata): what these options do not give is not sent, and requests
    /// without credentials here go unsigned. The operator opens a team's location so
    /// unless an administrator allowed the team its own cloud identity.
    pub anonymous: bool,
}

/// The credentials a location's Secret may give besides `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`. Only these: a Secret's other provider settings (a metadata
/// or credentials endpoint) would send the operator's requests where a team says.
pub const CREDENTIAL_KEYS: [&str; 4] =
    ["AWS_SESSION_TOKEN", "GOOGLE_SERVICE_ACCOUNT_KEY", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"];

impl LocationOptions {
    /// Whether requests to the location at `url` go unsigned: the options are anonymous
    /// and give none of that provider's credentials (a `file://` location signs nothing).
    pub fn unsigned(&self, url: &str) -> bool {
        let has = |k: &str| self.settings.iter().any(|(n, _)| n == k);
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        self.anonymous
            && match scheme {
                "s3" => self.access_key_id.is_none() || self.secret_access_key.is_none(),
                "gs" => !has("GOOGLE_SERVICE_ACCOUNT_KEY"),
                "az" => !has("AZURE_STORAGE_ACCOUNT_KEY"),
                _ => false,
            }
    }

    /// Options from `LIFELINE_S3_ENDPOINT`, `AWS_REGION` and `LIFELINE_S3_PATH_STYLE`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            endpoint: var("LIFELINE_S3_ENDPOINT").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            force_path_style: var("LIFELINE_S3_PATH_STYLE").is_some_and(|v| v == "true" || v == "1"),
            access_key_id: None,
            secret_access_key: None,
            settings: Vec::new(),
            anonymous: false,
            create: false,
            ca_bundle: ca_bundle_from_env("LIFELINE_"),
            insecure_skip_verify: var("LIFELINE_S3_INSECURE_SKIP_VERIFY").is_some_and(|v| v == "true" || v == "1"),
        }
    }
}

/// A CA bundle from `<prefix>S3_CA_BUNDLE_PEM` (the PEM text itself, as a Secret gives it
/// to a Job) or `<prefix>S3_CA_BUNDLE` (a file holding it); the prefix is `LIFELINE_`, or
/// `LIFELINE_TO_` for a replication's destination. A file that
/// cannot be read gives an empty bundle, which fails to parse when the location is
/// opened, naming the problem.
pub fn ca_bundle_from_env(prefix: &str) -> Option<Vec<u8>> {
    let var = |k: &str| std::env::var(format!("{prefix}{k}")).ok().filter(|v| !v.is_empty());
    if let Some(pem) = var("S3_CA_BUNDLE_PEM") {
        return Some(pem.into_bytes());
    }
    var("S3_CA_BUNDLE").map(|path| std::fs::read(path).unwrap_or_default())
}

/// A tokio runtime for storage I/O, shared by all locations of the process; the data
/// path itself is synchronous and threaded.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeline-io")
            .enable_all()
            .build()
            .expect("failed to start the storage runtime")
    })
}

pub(super) struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

/// Opens the location at `url` (`s3://`, `gs://`, `az://`, `file://`).
pub fn open(url: &str, options: &LocationOptions) -> Result<Arc<dyn Backend>, StoreError> {
    let config = |detail: String| StoreError::Config { url: url.to_string(), detail };
    let parsed = url::Url::parse(url).map_err(|e| config(e.to_string()))?;
    let prefix = parsed.path().trim_matches('/').to_string();
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "file" => {
            let dir = &file_path(url).map_err(config)?;
            if options.create {
                std::fs::create_dir_all(dir).map_err(|e| config(format!("cannot create {}: {e}", dir.display())))?;
            } else if !dir.is_dir() {
                return Err(StoreError::BucketMissing {
                    url: url.into(),
                    detail: format!("directory {} does not exist", dir.display()),
                });
            }
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| config(e.to_string()))?;
            let inner = ObjectBackend { store: Arc::new(fs), prefix: String::new(), url: url.to_string() };
            return Ok(Arc::new(super::local::LocalBackend::new(inner, dir.to_path_buf())));
        }
        "s3" => Arc::new(s3(&parsed, options).map_err(|e| config(e.to_string()))?),
        "gs" => {
            use object_store::gcp::GoogleCloudStorageBuilder as B;
            let mut b = if options.anonymous { B::new() } else { B::from_env() };
            b = b.with_skip_signature(options.unsigned(url));
            for (k, v) in settings(options, "GOOGLE_") {
                b = b.with_config(k, v);
            }
            Arc::new(b.with_url(url).build().map_err(|e| config(e.to_string()))?)
        }
        "az" => {
            use object_store::azure::MicrosoftAzureBuilder as B;
            let mut b = if options.anonymous { B::new() } else { B::from_env() };
            b = b.with_skip_signature(options.unsigned(url));
            for (k, v) in settings(options, "AZURE_") {
                b = b.with_config(k, v);
            }
            Arc::new(b.with_url(url).build().map_err(|e| config(e.to_string()))?)
        }
        other => return Err(config(format!("unsupported scheme {other:?}: use s3://, gs://, az:// or file://"))),
    };
    Ok(Arc::new(ObjectBackend { store, prefix, url: url.to_string() }))
}

/// The directory of a `file://` URL, as RFC 8089 reads it: `file:///abs/path` or
/// `file://localhost/abs/path`, percent-decoded. Another host, a relative path or the
/// filesystem root is an error (never a directory somewhere else).
pub fn file_path(raw: &str) -> Result<std::path::PathBuf, String> {
    if !raw.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("file://")) {
        return Err("a file URL starts with file:// and an absolute path: file:///path".into());
    }
    let parsed = url::Url::parse(raw).map_err(|e| e.to_string())?;
    match parsed.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(host) => {
            return Err(format!(
                "file URLs name a local path (file:///path or file://localhost/path), not host {host:?}: to use another machine's disk, mount it and give the local path"
            ));
        }
    }
    let path = parsed.to_file_path().map_err(|()| "not a local absolute path".to_string())?;
    if path.parent().is_none() {
        return Err("refusing the filesystem root as a location: give a directory".into());
    }
    Ok(path)
}

fn s3(url: &url::Url, o: &LocationOptions) -> object_store::Result<object_store::aws::AmazonS3> {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
    let mut b = if o.anonymous { AmazonS3Builder::new() } else { AmazonS3Builder::from_env() }
        .with_bucket_name(url.host_str().unwrap_or_default())
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(object_store::RetryConfig {
            max_retries: 4,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        });
    // Client options first: setting them replaces what `with_allow_http` set.
    let mut client = object_store::ClientOptions::new();
    if let Some(pem) = &o.ca_bundle {
        if pem.is_empty() {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: "the CA bundle is empty (or its file, LIFELINE_S3_CA_BUNDLE, could not be read)".into(),
            });
        }
        let certs = object_store::Certificate::from_pem_bundle(pem)?;
        if certs.is_empty() {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: "the CA bundle holds no PEM certificate".into(),
            });
        }
        for c in certs {
            client = client.with_root_certificate(c);
        }
    }
    if o.insecure_skip_verify {
        client = client.with_allow_invalid_certificates(true);
    }
    let proxy = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"].iter().any(|k| std::env::var_os(k).is_some());
    if plain_http_only(&b, o, proxy) {
        client = client.with_no_system_certificates(true);
    }
    b = b.with_client_options(client);
    if let Some(e) = &o.endpoint {
        b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
    }
    if let Some(r) = &o.region {
        b = b.with_region(r);
    } else if o.endpoint.is_some() {
        b = b.with_region("us-east-1");
    }
    if o.force_path_style || o.endpoint.is_some() {
        b = b.with_virtual_hosted_style_request(false);
    }
    if let (Some(k), Some(s)) = (&o.access_key_id, &o.secret_access_key) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
        for (k, v) in settings(o, "AWS_") {
            b = b.with_config(k, v);
        }
    }
    b.with_skip_signature(o.unsigned(url.as_str())).build()
}

/// Whether every request of an S3 location goes to its `http://` endpoint: requests
/// signed with static keys (or not signed), no proxy. Its client then loads no system
/// certificates: reading and parsing the system's trust store took about 50 ms of a
/// command's start from a cold page cache, before its first request, for a connection
/// that has no TLS. Credentials from a token or role go to an `https://` service (STS),
/// and a proxy may be reached over TLS: those keep the system's trust store.
fn plain_http_only(b: &object_store::aws::AmazonS3Builder, o: &LocationOptions, proxy: bool) -> bool {
    use object_store::aws::AmazonS3ConfigKey::{AccessKeyId, SecretAccessKey};
    let endpoint = o.endpoint.as_deref().unwrap_or_default();
    let keys = (o.access_key_id.is_some() && o.secret_access_key.is_some())
        || (b.get_config_value(&AccessKeyId).is_some() && b.get_config_value(&SecretAccessKey).is_some());
    endpoint.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")) && (keys || o.anonymous) && !proxy
}

/// The credentials of `o` for one provider (names starting with `prefix`), as its
/// builder's `from_env` reads them.
fn settings<K: std::str::FromStr>(o: &LocationOptions, prefix: &str) -> Vec<(K, String)> {
    o.settings
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && CREDENTIAL_KEYS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase().parse().ok()?, v.clone())))
        .collect()
}

impl ObjectBackend {
    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) }
    }

    fn key_of(&self, path: &Path) -> String {
        let p = path.as_ref();
        if self.prefix.is_empty() {
            p.to_string()
        } else {
            p.strip_prefix(&format!("{}/", self.prefix)).unwrap_or(p).to_string()
        }
    }

    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        classify(&self.url, key, e)
    }
}

/// Maps `object_store` errors to what the user needs to know.
fn classify(url: &str, key: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let (url, key) = (url.to_string(), key.to_string());
    match e {
        E::NotFound { .. } => StoreError::NotFound { url, key },
        E::AlreadyExists { .. } | E::Precondition { .. } => StoreError::AlreadyExists { url, key },
        E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
            StoreError::PermissionDenied { url, key, detail: source.to_string() }
        }
        other => {
            let detail = full_chain(&other);
            let lower = detail.to_lowercase();
            if lower.contains("nosuchbucket")
                || lower.contains("bucket does not exist")
                || lower.contains("containernotfound")
            {
                StoreError::BucketMissing { url, detail }
            } else if lower.contains("accessdenied")
                || lower.contains("signaturedoesnotmatch")
                || lower.contains("invalidaccesskeyid")
                || lower.contains("403 forbidden")
            {
                StoreError::PermissionDenied { url, key, detail }
            } else if lower.contains("connect")
                || lower.contains("timed out")
                || lower.contains("timeout")
                || lower.contains("connection")
                || lower.contains("503")
                || lower.contains("500 internal")
                || lower.contains("retries")
            {
                StoreError::Unreachable { url, detail }
            } else {
                StoreError::Other { url, detail }
            }
        }
    }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

impl Backend for ObjectBackend {
    fn put_new(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        runtime()
            .block_on(self.store.put_opts(&self.path(key), PutPayload::from_bytes(data), opts))
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        runtime().block_on(async { self.store.get(&self.path(key)).await?.bytes().await }).map_err(|e| self.err(key, e))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        runtime().block_on(self.store.get_range(&self.path(key), range)).map_err(|e| self.err(key, e))
    }

    /// The body's parts are copied straight into `buf`, not first gathered into a new
    /// buffer of their own.
    fn get_range_into(&self, key: &str, range: Range<u64>, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let want = range.end - range.start;
        buf.clear();
        buf.reserve(want as usize);
        let options = object_store::GetOptions::new().with_range(Some(range.clone()));
        runtime()
            .block_on(async {
                let mut body = self.store.get_opts(&self.path(key), options).await?.into_stream();
                while let Some(part) = body.try_next().await? {
                    buf.extend_from_slice(&part);
                }
                Ok(())
            })
            .map_err(|e| self.err(key, e))?;
        if buf.len() as u64 != want {
            return Err(StoreError::Other {
                url: self.url.clone(),
                detail: format!("{key}: {} bytes returned for bytes {}..{}", buf.len(), range.start, range.end),
            });
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let p = self.path(prefix.trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> =
            runtime().block_on(self.store.list(Some(&p)).try_collect()).map_err(|e| self.err(prefix, e))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo { key: self.key_of(&m.location), size: m.size, modified: m.last_modified.timestamp() })
            .filter(|o| o.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match runtime().block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The first request a store sends to a server that answers 403 to everything.
    fn first_request(anonymous: bool, keys: bool) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 16384];
            let n = s.read(&mut buf).unwrap();
            let body = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
            let _ = write!(
                s,
                "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
        });
        let o = LocationOptions {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            access_key_id: keys.then(|| "AKIDTEST".to_string()),
            secret_access_key: keys.then(|| "secret".to_string()),
            anonymous,
            ..Default::default()
        };
        let b = open("s3://bucket/prefix", &o).unwrap();
        let e = b.get("config").unwrap_err();
        assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e}");
        server.join().unwrap()
    }

    #[test]
    fn anonymous_options_send_unsigned_requests_and_given_keys_sign() {
        let unsigned = first_request(true, false);
        assert!(unsigned.starts_with("get /bucket/prefix/config"), "{unsigned}");
        assert!(!unsigned.contains("authorization:"), "{unsigned}");
        let signed = first_request(true, true);
        assert!(signed.contains("authorization: aws4-hmac-sha256 credential=akidtest/"), "{signed}");
    }

    #[test]
    fn only_credentials_are_taken_from_settings() {
        let o = LocationOptions {
            settings: vec![
                ("AWS_SESSION_TOKEN".into(), "t".into()),
                ("AWS_METADATA_ENDPOINT".into(), "http://elsewhere".into()),
            ],
            ..Default::default()
        };
        let taken: Vec<(object_store::aws::AmazonS3ConfigKey, String)> = settings(&o, "AWS_");
        assert_eq!(taken, vec![(object_store::aws::AmazonS3ConfigKey::Token, "t".to_string())]);
        assert!(!o.unsigned("s3://bucket/prefix"), "not anonymous: the environment may sign");
        let anonymous = LocationOptions { anonymous: true, ..o };
        assert!(anonymous.unsigned("s3://bucket/prefix") && anonymous.unsigned("gs://bucket"));
        assert!(!anonymous.unsigned("file:///var/lib/lifeline"));
    }

    #[test]
    fn only_a_plain_http_endpoint_signed_with_keys_skips_the_system_trust_store() {
        use object_store::aws::AmazonS3Builder;
        let with_keys = |endpoint: Option<&str>| LocationOptions {
            endpoint: endpoint.map(String::from),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        };
        let http = with_keys(Some("http://127.0.0.1:9000"));
        let plain = AmazonS3Builder::new();
        assert!(plain_http_only(&plain, &http, false));
        // Keys the environment gave the builder count too.
        let no_keys = || LocationOptions { endpoint: http.endpoint.clone(), ..Default::default() };
        assert!(plain_http_only(&plain.clone().with_access_key_id("k").with_secret_access_key("s"), &no_keys(), false));
        assert!(plain_http_only(&plain, &LocationOptions { anonymous: true, ..no_keys() }, false));
        // Credentials from a token or a role come from an HTTPS service; a proxy may be
        // reached over TLS; and an HTTPS endpoint or AWS itself needs the trust store.
        assert!(!plain_http_only(&plain, &no_keys(), false));
        assert!(!plain_http_only(&plain, &http, true));
        assert!(!plain_http_only(&plain, &with_keys(Some("https://s3.example.com")), false));
        assert!(!plain_http_only(&plain, &with_keys(None), false));
    }
}
