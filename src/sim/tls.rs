//! HTTPS for a cluster with authentication on. Clients built on client-go (kubectl,
//! Helm) send no credentials to a plain-HTTP server (clientcmd reads the user's token,
//! client certificate and impersonation settings only for TLS connections), so a cluster
//! that checks tokens serves TLS, as a real API server does. Each cluster makes its own
//! CA and a serving certificate for `127.0.0.1` and `localhost`; kubeconfigs carry the
//! CA as `certificate-authority-data`.

use std::sync::Arc;

pub struct Tls {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    pub fn new() -> std::io::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let err = |e: rcgen::Error| std::io::Error::other(format!("making the cluster's certificate: {e}"));
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "lifeline-sim-ca");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(err)?).map_err(err)?;
        let key = KeyPair::generate().map_err(err)?;
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).map_err(err)?;
        leaf.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        let cert = leaf.signed_by(&key, &ca).map_err(err)?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(std::io::Error::other)?
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone(), ca.der().clone()], key_der)
                .map_err(std::io::Error::other)?;
        Ok(Self { ca_pem: ca.pem(), acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) })
    }

    /// The CA, base64-encoded for a kubeconfig's `certificate-authority-data`.
    pub fn ca_data(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

/// Serves `app` over TLS on `listener`, HTTP/1.1 with upgrades (exec's websockets).
pub async fn serve(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: axum::Router) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                use tower::ServiceExt;
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
