use crate::helpers::*;
use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;

/// A chat backend's webhook endpoint that hands every delivery to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn status_changes_are_posted_with_a_verifiable_signature() {
    let (url, mut deliveries) = receiver().await;
    let app = spawn_app_with(&[
        ("SATCHEL_WEBHOOK_URL", url.as_str()),
        (
            "SATCHEL_WEBHOOK_SECRET",
            "hook-secret-0123456789abcdefghijkl",
        ),
    ])
    .await;
    let ok = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let bad = app
        .upload_ok("c1", "u1", "f.png", fixture("pixel-flood.png"))
        .await;

    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
            .await
            .expect("a webhook delivery")
            .unwrap();
        let signature = headers["satchel-signature"].to_str().unwrap().to_owned();
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret-0123456789abcdefghijkl").unwrap();
        mac.update(&body);
        assert_eq!(
            signature,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let event: Value = serde_json::from_slice(&body).unwrap();
        seen.insert(event["id"].as_str().unwrap().to_owned(), event);
    }
    let ready = &seen[ok["id"].as_str().unwrap()];
    assert_eq!(ready["event"], "media.ready");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["chat_id"], "c1");
    assert!(ready["variants"]["thumbnail"].is_object());
    let failed = &seen[bad["id"].as_str().unwrap()];
    assert_eq!(failed["event"], "media.failed");
    assert_eq!(failed["error"]["code"], "too_many_pixels");
}
