//! Webhooks to an `https://` receiver: verified against the system roots plus `tls_ca_file`;
//! a receiver that fails the check gets nothing, never a plaintext retry.

use super::*;
use crate::helpers::*;
use axum::body::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;

const SECRET: &str = "hook-secret-0123456789abcdefghijkl";

/// An HTTPS webhook endpoint presenting `leaf` (a plaintext one with `None`, still named by
/// an `https://` URL), handing every delivery's body to the test.
async fn https_receiver(
    dir: &Path,
    leaf: Option<&Leaf>,
) -> (String, mpsc::UnboundedReceiver<Bytes>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    match leaf {
        Some(leaf) => {
            let (cert, key) = leaf.write(dir, "receiver");
            let certificates = satchel::tls::server::Certificates::load(&cert, &key).unwrap();
            let acceptor = certificates.acceptor().unwrap();
            let listener = satchel::tls::server::TlsListener::new(tcp, acceptor).unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        None => {
            tokio::spawn(async move { axum::serve(tcp, app).await });
        }
    }
    (format!("https://localhost:{port}/hook"), rx)
}

/// An app posting to `url` and trusting `ca_file`; uploads an image and waits for its job.
async fn upload_with_webhook(url: &str, ca_file: &Path) -> TestApp {
    let ca_file = ca_file.display().to_string();
    let app = spawn_app_with(&[
        ("SATCHEL_WEBHOOK_URL", url),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
        ("SATCHEL_TLS_CA_FILE", ca_file.as_str()),
    ])
    .await;
    let media = app.upload_ok("c1", "u1", "a.png", flat_png(64)).await;
    let media = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(media["status"], "ready", "{media}");
    app
}

#[tokio::test]
async fn webhooks_reach_an_https_receiver_whose_ca_is_tls_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("receiver CA");
    let (url, mut deliveries) = https_receiver(dir.path(), Some(&ca.issue(LOCAL))).await;
    let _app = upload_with_webhook(&url, &ca.write(dir.path(), "ca.pem")).await;
    let body = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
        .await
        .expect("a delivery over HTTPS")
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["event"], "media.ready", "{event}");
}

#[tokio::test]
async fn a_receiver_with_a_wrong_ca_an_expired_or_mismatched_certificate_or_no_tls_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, stranger) = (Ca::new("trusted CA"), Ca::new("stranger CA"));
    let ca_file = trusted.write(dir.path(), "ca.pem");
    let cases = [
        ("wrong CA", Some(stranger.issue(LOCAL))),
        ("expired", Some(trusted.issue_expired(LOCAL))),
        ("host name mismatch", Some(trusted.issue(&["chat.example"]))),
        ("plaintext receiver", None),
    ];
    for (what, leaf) in cases {
        let case_dir = tempfile::tempdir().unwrap();
        let (url, mut deliveries) = https_receiver(case_dir.path(), leaf.as_ref()).await;
        let _app = upload_with_webhook(&url, &ca_file).await;
        // The first attempt is made when the job ends; a refused handshake delivers nothing.
        let got = tokio::time::timeout(Duration::from_secs(3), deliveries.recv()).await;
        assert!(got.is_err(), "{what}: the receiver got a delivery");
    }
}
