//! The event outbox as a chat backend's webhook receiver sees it (API.md v1.1 "Events"):
//! every change is an event, delivered at least once, in order per media, across receiver
//! outages, crashes of the service, and dead deliveries that an operator re-queues.
//!
//! How it can be abused or break, and the test for each:
//! - the receiver is down for a while: nothing is lost
//!   (`a_receiver_that_fails_for_a_while_gets_every_event_once_it_recovers`);
//! - the receiver never takes some event: it goes dead, later events of the same media are not
//!   held back, and an operator re-queues it
//!   (`a_delivery_that_keeps_failing_goes_dead_without_holding_back_and_can_be_requeued`);
//! - the service is killed (SIGKILL) between the commit and the delivery
//!   (`events_written_before_a_kill_are_delivered_after_the_restart`);
//! - an erase races the events of its media: `media.erased` after `media.ready`, never before
//!   (`every_change_is_an_event_and_a_medias_events_come_in_order`);
//! - the dead list is no open door: it needs the bearer token (`the_dead_list_needs_the_token`).

use crate::helpers::*;
use crate::processes::{signal, start_node, Node};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const SECRET: &str = "hook-secret-0123456789abcdefghijkl";

/// A webhook endpoint: hands every delivery (the event JSON and whether it was accepted) to
/// the test; refuses with `500` while `refuse` says so for that event.
pub struct Receiver {
    pub url: String,
    pub deliveries: mpsc::UnboundedReceiver<(Value, bool)>,
    pub refusing: Arc<AtomicBool>,
}

type Refuse = dyn Fn(&Value) -> bool + Send + Sync;

type Pause = dyn Fn(&Value) -> Duration + Send + Sync;

pub async fn receiver(refuse: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Receiver {
    receiver_pausing(refuse, |_| Duration::ZERO).await
}

/// A receiver that takes `pause(event)` to answer each delivery.
pub async fn receiver_pausing(
    refuse: impl Fn(&Value) -> bool + Send + Sync + 'static,
    pause: impl Fn(&Value) -> Duration + Send + Sync + 'static,
) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let refusing = Arc::new(AtomicBool::new(true));
    let refuse: Arc<Refuse> = Arc::new(refuse);
    let pause: Arc<Pause> = Arc::new(pause);
    let switch = refusing.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (tx, refuse, switch) = (tx.clone(), refuse.clone(), switch.clone());
            let pause = pause.clone();
            async move {
                let signature = headers["satchel-signature"].to_str().unwrap().to_owned();
                assert!(
                    verifies(&signature, &body, SECRET),
                    "a delivery that does not verify: {signature}"
                );
                let event: Value = serde_json::from_slice(&body).unwrap();
                tokio::time::sleep(pause(&event)).await;
                let refused = switch.load(Ordering::SeqCst) && refuse(&event);
                let _ = tx.send((event, !refused));
                match refused {
                    true => StatusCode::INTERNAL_SERVER_ERROR,
                    false => StatusCode::OK,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        deliveries: rx,
        refusing,
    }
}

/// The receiver's check of `Satchel-Signature: t=...,v1=...`: some `v1` is the HMAC of
/// `"<t>.<body>"` and `t` is within 5 minutes.
pub fn verifies(header: &str, body: &[u8], secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => return false,
        }
    }
    let Some(t) = t else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t) > 300 {
        return false;
    }
    v1.iter().any(|v| {
        let Ok(expected) = hex::decode(v) else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

impl Receiver {
    /// The next delivery, within `within`.
    pub async fn next(&mut self, within: Duration) -> (Value, bool) {
        tokio::time::timeout(within, self.deliveries.recv())
            .await
            .expect("a webhook delivery in time")
            .unwrap()
    }

    /// Accepted deliveries until `done` says the ones so far are enough.
    pub async fn accepted_until(
        &mut self,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut accepted = Vec::new();
        while !done(&accepted) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, ok) = tokio::time::timeout(left, self.deliveries.recv())
                .await
                .unwrap_or_else(|_| panic!("only these arrived in time: {accepted:#?}"))
                .unwrap();
            if ok {
                accepted.push(event);
            }
        }
        accepted
    }
}

fn hook_settings(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("SATCHEL_WEBHOOK_URL", url),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
    ]
}

/// The events of each media (and the chat's own, under `chat:<id>`), in delivery order.
fn by_subject(events: &[Value]) -> HashMap<String, Vec<String>> {
    let mut subjects: HashMap<String, Vec<String>> = HashMap::new();
    for e in events {
        let subject = match e["event"].as_str().unwrap() {
            "chat.erased" => format!("chat:{}", e["chat_id"].as_str().unwrap()),
            _ => e["id"].as_str().unwrap().to_owned(),
        };
        subjects
            .entry(subject)
            .or_default()
            .push(e["event"].as_str().unwrap().to_owned());
    }
    subjects
}

fn assert_ulid(id: &Value) {
    let id = id.as_str().unwrap_or_else(|| panic!("event_id {id}"));
    assert_eq!(id.len(), 26, "{id}");
    assert!(ulid::Ulid::from_string(id).is_ok(), "{id}");
}

#[tokio::test]
async fn every_change_is_an_event_and_a_medias_events_come_in_order() {
    let mut hook = receiver(|_| false).await;
    let app = spawn_app_with(&hook_settings(&hook.url)).await;
    let photo = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let photo_id = photo["id"].as_str().unwrap().to_owned();
    let file = app
        .upload_ok("c1", "u1", "n.txt", fixture("not-an-image.txt"))
        .await;
    let file_id = file["id"].as_str().unwrap().to_owned();
    let kept = app
        .upload_ok("c1", "u1", "q.jpg", fixture("photo.jpg"))
        .await;
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    app.wait_processed(&photo_id).await;
    app.wait_processed(&kept_id).await;
    // Unsent right after it became ready: its erasure may overtake nothing.
    let r = app
        .api(Method::DELETE, &format!("/v1/media/{photo_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.erase_chat("c1").await;

    let events = hook
        .accepted_until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| e["event"] == "chat.erased")
                && seen.iter().filter(|e| e["event"] == "media.erased").count() >= 3
        })
        .await;
    let subjects = by_subject(&events);
    assert_eq!(
        subjects[&photo_id],
        ["media.ready", "media.erased"],
        "{events:#?}"
    );
    assert_eq!(
        subjects[&kept_id],
        ["media.ready", "media.erased"],
        "{events:#?}"
    );
    // A file needs no processing: it is ready at once, and says so like any other.
    assert_eq!(
        subjects[&file_id],
        ["media.ready", "media.erased"],
        "{events:#?}"
    );
    assert_eq!(subjects["chat:c1"], ["chat.erased"]);

    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), events.len(), "every event has its own event_id");
    for e in &events {
        assert_ulid(&e["event_id"]);
        assert_eq!(e["chat_id"], "c1");
    }
    let erased = |id: &str| {
        events
            .iter()
            .find(|e| e["event"] == "media.erased" && e["id"] == id)
            .unwrap()
            .clone()
    };
    let unsent = erased(&photo_id);
    assert_eq!(unsent["reason"], "unsent");
    // The Media object as it was, status unchanged.
    assert_eq!(unsent["status"], "ready");
    assert!(unsent["variants"]["thumbnail"].is_object(), "{unsent}");
    assert_eq!(unsent["sha256"], photo["sha256"]);
    assert_eq!(erased(&kept_id)["reason"], "chat_erased");
    assert_eq!(erased(&file_id)["reason"], "chat_erased");
    let chat = events.iter().find(|e| e["event"] == "chat.erased").unwrap();
    let erased_at = chat["erased_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(erased_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{chat}"
    );
    let ready = events
        .iter()
        .find(|e| e["event"] == "media.ready" && e["id"] == photo_id.as_str())
        .unwrap();
    assert!(ready.get("reason").is_none(), "{ready}");
    assert_eq!(ready["status"], "ready");
}

/// Each media's `media.erased` is written right after its `media.ready`, and the receiver is
/// slow to take a `media.ready`: sent side by side, every erasure would overtake its media's
/// readiness.
#[tokio::test]
async fn an_erasure_written_right_after_readiness_never_overtakes_it() {
    let mut hook = receiver_pausing(
        |_| false,
        |e| match e["event"] == "media.ready" {
            true => Duration::from_millis(300),
            false => Duration::ZERO,
        },
    )
    .await;
    let app = spawn_app_with(&hook_settings(&hook.url)).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let media = app
            .upload_ok("c1", "u1", &format!("{i}.txt"), fixture("not-an-image.txt"))
            .await;
        let id = media["id"].as_str().unwrap().to_owned();
        let r = app
            .api(Method::DELETE, &format!("/v1/media/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        ids.push(id);
    }
    let events = hook
        .accepted_until(Duration::from_secs(60), |seen| seen.len() >= 2 * ids.len())
        .await;
    let subjects = by_subject(&events);
    for id in &ids {
        assert_eq!(subjects[id], ["media.ready", "media.erased"], "{id}");
    }
}

#[tokio::test]
async fn media_whose_time_runs_out_are_erased_with_reason_expired() {
    let mut hook = receiver(|_| false).await;
    let app = spawn_app_with(&hook_settings(&hook.url)).await;
    app.add_member("c1", "u1").await;
    let r = app
        .api(
            Method::POST,
            "/v1/chats/c1/media?user=u1&filename=n.txt&ttl_seconds=1",
        )
        .body(fixture("not-an-image.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"].clone();
    let events = hook
        .accepted_until(Duration::from_secs(30), |seen| {
            seen.iter().any(|e| e["event"] == "media.erased")
        })
        .await;
    let erased = events
        .iter()
        .find(|e| e["event"] == "media.erased")
        .unwrap();
    assert_eq!(erased["id"], id);
    assert_eq!(erased["reason"], "expired");
}

#[tokio::test]
async fn a_receiver_that_fails_for_a_while_gets_every_event_once_it_recovers() {
    let mut hook = receiver(|_| true).await;
    let app = spawn_app_with(&hook_settings(&hook.url)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let media = app
            .upload_ok("c1", "u1", &format!("{i}.txt"), fixture("not-an-image.txt"))
            .await;
        ids.push(media["id"].as_str().unwrap().to_owned());
    }
    // Refused a few times each...
    let mut refused = 0;
    while refused < 6 {
        let (_, accepted) = hook.next(Duration::from_secs(30)).await;
        assert!(!accepted);
        refused += 1;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("satchel_events_pending{sink=\"webhook\"} 3"),
        "{metrics}"
    );
    // ...then the receiver recovers and gets every one.
    hook.refusing.store(false, Ordering::SeqCst);
    let events = hook
        .accepted_until(Duration::from_secs(60), |seen| {
            let got: HashSet<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
            ids.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    assert!(events.iter().all(|e| e["event"] == "media.ready"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app.metrics().await;
        if metrics.contains("satchel_events_pending{sink=\"webhook\"} 0") {
            assert!(
                metrics.contains("satchel_events_delivered_total{sink=\"webhook\"} 3"),
                "{metrics}"
            );
            assert!(metrics.contains("satchel_event_delivery_seconds_count{sink=\"webhook\"} 3"));
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn dead_list(app: &TestApp) -> Vec<Value> {
    let r = app
        .api(Method::GET, "/v1/events/dead")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["dead"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_goes_dead_without_holding_back_and_can_be_requeued() {
    // The receiver refuses every media.ready, and takes everything else.
    let mut hook = receiver(|e| e["event"] == "media.ready").await;
    let mut settings = hook_settings(&hook.url);
    settings.push(("SATCHEL_WEBHOOK_MAX_AGE_SECONDS", "2"));
    let app = spawn_app_with(&settings).await;
    let media = app
        .upload_ok("c1", "u1", "n.txt", fixture("not-an-image.txt"))
        .await;
    let id = media["id"].as_str().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = dead_list(&app).await;
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "never marked dead");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let d = &dead[0];
    assert_eq!(d["event"], "media.ready");
    assert_eq!(d["sink"], "webhook");
    assert_eq!(d["media_id"], id);
    assert_eq!(d["chat_id"], "c1");
    assert!(d["attempts"].as_u64().unwrap() >= 2, "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("500"), "{d}");
    assert_eq!(d["body"]["id"], id);
    assert_ulid(&d["event_id"]);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("satchel_events_dead{sink=\"webhook\"} 1"),
        "{metrics}"
    );

    // A dead event holds nothing back: the media's next event goes out.
    let r = app
        .api(Method::DELETE, &format!("/v1/media/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let events = hook
        .accepted_until(Duration::from_secs(30), |seen| !seen.is_empty())
        .await;
    assert_eq!(events[0]["event"], "media.erased");

    // The operator fixes the receiver and re-queues: the dead one arrives, once.
    hook.refusing.store(false, Ordering::SeqCst);
    let r = app
        .api(Method::POST, "/v1/events/dead/retry")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["requeued"], 1);
    let events = hook
        .accepted_until(Duration::from_secs(30), |seen| !seen.is_empty())
        .await;
    assert_eq!(events[0]["event"], "media.ready");
    assert_eq!(events[0]["event_id"], d["event_id"]);
    assert!(dead_list(&app).await.is_empty());
}

#[tokio::test]
async fn the_dead_list_needs_the_token() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/v1/events/dead"),
        (Method::POST, "/v1/events/dead/retry"),
    ] {
        let r = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let r = app
        .api(Method::GET, "/v1/events/dead?limit=0")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(dead_list(&app).await.is_empty());
}

/// Kills the node with SIGKILL and waits for it to be gone.
pub fn kill(node: &mut Node) {
    signal(node, "KILL");
    let _ = node.child.wait();
}

#[tokio::test]
async fn events_written_before_a_kill_are_delivered_after_the_restart() {
    // A slow receiver (16 deliveries at a time, a second each), so that most events are still
    // in the outbox when the node is killed.
    let mut hook = receiver_pausing(|_| false, |_| Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SATCHEL_API_TOKENS", TOKEN),
        ("SATCHEL_WEBHOOK_URL", hook.url.as_str()),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
    ];
    let mut node = start_node(&["serve"], dir.path(), env).await;
    let ids = crate::processes::upload_many(&node, 40, "not-an-image.txt", "txt").await;
    kill(&mut node);
    let before: Vec<Value> = std::iter::from_fn(|| hook.deliveries.try_recv().ok())
        .filter(|(_, accepted)| *accepted)
        .map(|(event, _)| event)
        .collect();
    assert!(
        before.len() < ids.len(),
        "all were delivered before the kill"
    );

    let _node = start_node(&["serve"], dir.path(), env).await;
    let after = hook
        .accepted_until(Duration::from_secs(60), |after| {
            let got: HashSet<&str> = before
                .iter()
                .chain(after)
                .map(|e| e["id"].as_str().unwrap())
                .collect();
            ids.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    assert!(after.iter().all(|e| e["event"] == "media.ready"));
}
