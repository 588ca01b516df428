//! Webhook deliveries as a chat backend receives them: `Satchel-Signature: t=...,v1=...`,
//! checked the way the README tells receivers to check it.

use crate::helpers::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const SECRET: &str = "hook-secret-0123456789abcdefghijkl";

/// A chat backend's webhook endpoint that hands every delivery to the test and answers `200`.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    receiver_answering(Vec::new()).await
}

/// A receiver that answers its n-th delivery with `answers[n]` (a status, after a pause),
/// and `200` at once past the end of the list.
async fn receiver_answering(
    answers: Vec<(StatusCode, Duration)>,
) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let answers = Arc::new(answers);
    let count = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (tx, answers, count) = (tx.clone(), answers.clone(), count.clone());
            async move {
                let _ = tx.send((headers, body));
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (status, pause) = answers
                    .get(n)
                    .copied()
                    .unwrap_or((StatusCode::OK, Duration::ZERO));
                tokio::time::sleep(pause).await;
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next_delivery(deliveries: &mut mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) -> Delivery {
    let (headers, body) = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
        .await
        .expect("a webhook delivery")
        .unwrap();
    let header = headers["satchel-signature"].to_str().unwrap().to_owned();
    Delivery::parse(&header, body)
}

/// One delivery, its `Satchel-Signature` taken apart as a receiver would.
struct Delivery {
    header: String,
    t: u64,
    v1: Vec<String>,
    body: Bytes,
}

impl Delivery {
    fn parse(header: &str, body: Bytes) -> Delivery {
        let mut t = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", value)) => t = Some(value.parse().expect("t is unix seconds")),
                Some(("v1", value)) => v1.push(value.to_owned()),
                _ => panic!("unexpected {part:?} in Satchel-Signature: {header}"),
            }
        }
        let t = t.unwrap_or_else(|| panic!("no t= in Satchel-Signature: {header}"));
        assert!(!v1.is_empty(), "no v1= in Satchel-Signature: {header}");
        Delivery {
            header: header.to_owned(),
            t,
            v1,
            body,
        }
    }

    /// The receiver's replay check: `t` within 5 minutes of its clock.
    fn assert_fresh(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(self.t) <= 300, "t={} now={now}", self.t);
    }

    /// Whether `v1` is the HMAC-SHA256 of `"<t>.<body>"` keyed with `secret`, compared in
    /// constant time.
    fn signed_by(&self, v1: &str, secret: &str) -> bool {
        let Ok(expected) = hex::decode(v1) else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{}.", self.t).as_bytes());
        mac.update(&self.body);
        mac.verify_slice(&expected).is_ok()
    }

    /// Whether any `v1=` of the header verifies with `secret`.
    fn verifies_with(&self, secret: &str) -> bool {
        self.v1.iter().any(|v1| self.signed_by(v1, secret))
    }

    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[tokio::test]
async fn status_changes_are_posted_with_a_verifiable_signature() {
    let (url, mut deliveries) = receiver().await;
    let app = spawn_app_with(&[
        ("SATCHEL_WEBHOOK_URL", url.as_str()),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
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
        let delivery = next_delivery(&mut deliveries).await;
        delivery.assert_fresh();
        assert_eq!(delivery.v1.len(), 1, "{}", delivery.header);
        assert!(delivery.verifies_with(SECRET), "{}", delivery.header);
        // Review finding 5: holding the webhook's key gives no API access, nor the reverse.
        assert!(!delivery.verifies_with(TOKEN), "signed with the API token");
        let event = delivery.event();
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

/// Review finding 5: the webhook key no longer defaults to the first API token, which made
/// every webhook receiver a holder of full API access.
#[tokio::test]
async fn without_a_webhook_secret_one_is_generated_kept_private_and_it_is_no_api_token() {
    let (url, mut deliveries) = receiver().await;
    let app = spawn_app_with(&[("SATCHEL_WEBHOOK_URL", url.as_str())]).await;
    let path = app.dir.path().join("webhook-secret");
    let secret = std::fs::read_to_string(&path).expect("a generated webhook-secret");
    let secret = secret.trim();
    assert!(secret.len() >= 32, "{secret:?}");
    assert_ne!(secret, TOKEN);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let media = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let delivery = next_delivery(&mut deliveries).await;
    assert_eq!(delivery.event()["id"], media["id"]);
    delivery.assert_fresh();
    assert!(delivery.verifies_with(secret), "{}", delivery.header);
    assert!(!delivery.verifies_with(TOKEN), "signed with the API token");
}

#[tokio::test]
async fn during_a_rotation_the_header_carries_one_signature_per_secret() {
    let new = "new-hook-secret-0123456789abcdefghij";
    let old = "old-hook-secret-0123456789abcdefghij";
    let (url, mut deliveries) = receiver().await;
    let secrets = format!("{new},{old}");
    let app = spawn_app_with(&[
        ("SATCHEL_WEBHOOK_URL", url.as_str()),
        ("SATCHEL_WEBHOOK_SECRETS", secrets.as_str()),
    ])
    .await;
    app.upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let delivery = next_delivery(&mut deliveries).await;
    delivery.assert_fresh();
    assert_eq!(delivery.v1.len(), 2, "{}", delivery.header);
    // A receiver that knows only one of them, old or new, accepts the delivery.
    assert!(
        delivery.signed_by(&delivery.v1[0], new),
        "{}",
        delivery.header
    );
    assert!(
        delivery.signed_by(&delivery.v1[1], old),
        "{}",
        delivery.header
    );
    assert!(!delivery.verifies_with(TOKEN));
}

/// A backlog delivered later must still pass the receiver's 5-minute window: each attempt
/// carries the time it was made, not the time of the first.
#[tokio::test]
async fn every_attempt_is_signed_afresh() {
    // The first answer comes after more than a second, so the retry is a later second.
    let (url, mut deliveries) = receiver_answering(vec![(
        StatusCode::INTERNAL_SERVER_ERROR,
        Duration::from_millis(1500),
    )])
    .await;
    let app = spawn_app_with(&[
        ("SATCHEL_WEBHOOK_URL", url.as_str()),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    app.upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let refused = next_delivery(&mut deliveries).await;
    let retried = next_delivery(&mut deliveries).await;
    assert_eq!(refused.body, retried.body, "the same event, sent again");
    for attempt in [&refused, &retried] {
        attempt.assert_fresh();
        assert!(attempt.verifies_with(SECRET), "{}", attempt.header);
    }
    assert!(
        retried.t > refused.t,
        "the retry carries the first attempt's time: {} then {}",
        refused.header,
        retried.header
    );
    assert_ne!(refused.v1, retried.v1);
}
