//! The RecordEngine client over HTTPS to a server whose certificate comes
//! from a private CA, as a self-hosted instance may have. The server runs on
//! 127.0.0.1 with the test-only certificates in `tests/fixtures/tls`.

use std::sync::Arc;
use std::time::Duration;

use bridge_shared::fakes::FakeSecrets;
use bridge_shared::json::Node;
use bridge_shared::recordengine::{
    CaBundleSource, DocumentApi, RecordEngineClient, RecordEngineConfig, RecordEngineError, RecordEngineSettings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CA: &[u8] = include_bytes!("fixtures/tls/ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("fixtures/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("fixtures/tls/server.key");
const SECRET: &str = "recordengine-token";

/// Starts an HTTPS server that answers every request with one document; returns its base URL.
async fn start_tls_server() -> String {
    let certificates = CertificateDer::pem_slice_iter(SERVER_CERT)
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).expect("server key");
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .expect("TLS server configuration");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();

    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let body = r#"{"id": 42, "status": "Exported"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://{address}")
}

fn secrets() -> Arc<FakeSecrets> {
    let secrets = Arc::new(FakeSecrets::default());
    secrets.set(SECRET, "re_tls_test_token");
    secrets
}

fn config(base_url: &str) -> RecordEngineConfig {
    let mut config = RecordEngineConfig::new(base_url, SECRET);
    config.request_timeout = Duration::from_secs(5);
    config
}

#[tokio::test]
async fn private_ca_is_rejected_without_bundle() {
    let base_url = start_tls_server().await;
    let client = RecordEngineClient::new_guarded(config(&base_url), secrets()).unwrap();

    let error = client.document_status(42).await.unwrap_err();

    assert!(
        matches!(&error, RecordEngineError::Unavailable { status: None, .. }),
        "{error:?}"
    );
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn private_ca_bundle_is_trusted() {
    let base_url = start_tls_server().await;
    let mut with_bundle = config(&base_url);
    with_bundle.ca_bundle_pem = Some(CA.to_vec());
    let client = RecordEngineClient::new_guarded(with_bundle, secrets()).unwrap();

    let status = client.document_status(42).await.unwrap();

    assert_eq!(status.get("status").and_then(Node::as_str), Some("Exported"));
}

#[tokio::test]
async fn ca_bundle_loads_from_file_and_secret() {
    let base_url = start_tls_server().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    let secrets = secrets();
    secrets.set("ca-bundle", std::str::from_utf8(CA).unwrap());

    for source in [CaBundleSource::File(path), CaBundleSource::Secret("ca-bundle".into())] {
        let settings = RecordEngineSettings {
            config: config(&base_url),
            ca_bundle: Some(source.clone()),
        };
        let loaded = settings.load(secrets.as_ref()).await.unwrap();
        let client = RecordEngineClient::new_guarded(loaded, Arc::clone(&secrets)).unwrap();

        let status = client.document_status(42).await;

        assert!(status.is_ok(), "{source:?}: {status:?}");
    }

    let missing = RecordEngineSettings {
        config: config(&base_url),
        ca_bundle: Some(CaBundleSource::File("/nonexistent/ca.pem".into())),
    };
    let error = missing.load(secrets.as_ref()).await.unwrap_err();
    assert!(
        error
            .0
            .contains("RECORDENGINE_CA_BUNDLE_FILE /nonexistent/ca.pem cannot be read"),
        "{error}"
    );
}
