//! An S3 endpoint behind HTTPS with a private CA (a TLS proxy in front of a real S3
//! server): without the CA the connection is refused with a certificate error; with the
//! location's CA bundle (or, for tests, skipped verification) it works, from the library
//! and from the CLI's environment.

use crate::support::s3;
use lifeline::store::{self, LocationOptions};
use std::time::Duration;

/// A TLS-terminating proxy to `target`; returns its HTTPS endpoint and the CA's PEM.
fn tls_proxy(rt: &tokio::runtime::Runtime, target: u16) -> (String, String) {
    let tls = lifeline::sim::tls::Tls::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.acceptor.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(tcp).await else { return };
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), tls.ca_pem)
}

#[test]
fn an_https_endpoint_with_a_private_ca_needs_its_bundle() {
    let (eu, _) = s3::regions();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (endpoint, ca_pem) = tls_proxy(&rt, eu.port);
    let url = format!("s3://lifeline/{}", s3::unique("tls"));
    let base = LocationOptions { endpoint: Some(endpoint.clone()), ..eu.options() };

    // The system's roots do not know this CA.
    let plain = store::open(&url, &base).unwrap();
    let err = plain.list("").unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");

    // With the bundle: a write and a read over HTTPS.
    let trusted =
        store::open(&url, &LocationOptions { ca_bundle: Some(ca_pem.clone().into_bytes()), ..base.clone() }).unwrap();
    trusted.put_new("probe", bytes::Bytes::from_static(b"over tls")).unwrap();
    assert_eq!(&trusted.get("probe").unwrap()[..], b"over tls");

    // Skipped verification works too (tests only); a bundle without a certificate is an
    // error naming it, not a silent fall-back to the system's roots.
    let insecure = store::open(&url, &LocationOptions { insecure_skip_verify: true, ..base.clone() }).unwrap();
    assert_eq!(insecure.list("").unwrap().len(), 1);
    let bad = store::open(&url, &LocationOptions { ca_bundle: Some(b"not a certificate".to_vec()), ..base.clone() })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(bad.contains("no PEM certificate"), "{bad}");

    // The CLI (and so a mover Job) takes the bundle from its environment.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let cli_url = format!("{url}-cli");
    let run = |ca: Option<(&str, &str)>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lifeline"));
        c.args(["repo", "init", &cli_url, "--endpoint", &endpoint])
            .env("LIFELINE_PASSWORD", "pw")
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .env("LIFELINE_S3_PATH_STYLE", "true");
        if let Some((k, v)) = ca {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let refused = run(None);
    assert!(!refused.status.success(), "{}", String::from_utf8_lossy(&refused.stdout));
    let ok = run(Some(("LIFELINE_S3_CA_BUNDLE", ca_file.to_str().unwrap())));
    assert!(ok.status.success(), "{}{}", String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
    let pem_var = run(Some(("LIFELINE_S3_CA_BUNDLE_PEM", &ca_pem)));
    assert!(!pem_var.status.success(), "a second init finds the repository");
    assert!(String::from_utf8_lossy(&pem_var.stdout).contains("AlreadyInitialized"), "reached the server over TLS");
    rt.shutdown_timeout(Duration::from_secs(1));
}
