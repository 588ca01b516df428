//! Events on the broker, as a consumer bound to `<prefix>.events` receives them: real
//! RabbitMQ and PostgreSQL only (the real-backend pass; the embedded pass leaves `broker::`
//! out, having no broker).
//!
//! Abuse and failure cases: a consumer that binds before the first event (the exchange must
//! exist from start-up); a node killed between commit and confirm; two nodes sharing one
//! outbox (neither may send what the other sent).

use crate::events::{kill, receiver, verifies, SECRET};
use crate::helpers::*;
use crate::processes::start_node;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use reqwest::Method;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn amqp_url() -> String {
    std::env::var("SATCHEL_TEST_AMQP_URL")
        .expect("the broker tests need SATCHEL_TEST_AMQP_URL (scripts/test-real.sh sets it)")
}

fn fresh_prefix() -> String {
    format!("t{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A message as a consumer sees it.
#[derive(Debug)]
struct Message {
    routing_key: String,
    persistent: bool,
    message_id: String,
    signature: String,
    body: Value,
    raw: Vec<u8>,
}

/// A server-named queue bound to `<prefix>.events` with `#`, WITHOUT declaring the exchange:
/// binding fails if satchel did not declare it at start-up.
struct Consumer {
    _connection: lapin::Connection,
    consumer: lapin::Consumer,
}

impl Consumer {
    async fn bind(prefix: &str) -> Consumer {
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .expect("RabbitMQ answers");
        let channel = connection.create_channel().await.unwrap();
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().as_str(),
                &format!("{prefix}.events"),
                "#",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("the events exchange exists as soon as satchel is up");
        let consumer = channel
            .basic_consume(
                queue.name().as_str(),
                "test",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Consumer {
            _connection: connection,
            consumer,
        }
    }

    async fn next(&mut self, deadline: Instant) -> Message {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, self.consumer.next())
            .await
            .expect("an event on the exchange in time")
            .expect("the consumer is open")
            .expect("a delivery");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let p = &delivery.properties;
        let signature = match p
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("satchel-signature").cloned())
        {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("no satchel-signature header: {other:?}"),
        };
        Message {
            routing_key: delivery.routing_key.to_string(),
            persistent: *p.delivery_mode() == Some(2),
            message_id: p
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            signature,
            body: serde_json::from_slice(&delivery.data).unwrap(),
            raw: delivery.data.clone(),
        }
    }

    /// Messages until `done` says the ones so far are enough.
    async fn until(&mut self, within: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while !done(&seen) {
            seen.push(self.next(deadline).await);
        }
        seen
    }
}

#[tokio::test]
async fn a_consumer_bound_before_the_first_event_receives_every_change_with_its_routing_key() {
    let prefix = fresh_prefix();
    let app = spawn_app_with(&[
        ("SATCHEL_AMQP_PREFIX", prefix.as_str()),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let mut consumer = Consumer::bind(&prefix).await;
    let photo = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let photo_id = photo["id"].as_str().unwrap().to_owned();
    let failed = app
        .upload_ok("c1", "u1", "f.png", fixture("pixel-flood.png"))
        .await;
    let failed_id = failed["id"].as_str().unwrap().to_owned();
    app.wait_processed(&photo_id).await;
    app.wait_processed(&failed_id).await;
    let r = app
        .api(Method::DELETE, &format!("/v1/media/{photo_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    app.erase_chat("c1").await;

    let messages = consumer
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|m| m.routing_key == "chat.erased.c1")
        })
        .await;
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for m in &messages {
        assert!(m.persistent, "{m:?}");
        assert_eq!(m.message_id, m.body["event_id"].as_str().unwrap(), "{m:?}");
        assert!(verifies(&m.signature, &m.raw, SECRET), "{m:?}");
        assert_eq!(
            m.routing_key,
            format!("{}.c1", m.body["event"].as_str().unwrap())
        );
        let subject = m.body["id"].as_str().unwrap_or("chat").to_owned();
        keys.entry(subject).or_default().push(m.routing_key.clone());
    }
    assert_eq!(
        keys[&photo_id],
        ["media.ready.c1", "media.erased.c1"],
        "{messages:#?}"
    );
    assert_eq!(
        keys[&failed_id],
        ["media.failed.c1", "media.erased.c1"],
        "{messages:#?}"
    );
    assert_eq!(keys["chat"], ["chat.erased.c1"]);
    let ready = &messages
        .iter()
        .find(|m| m.routing_key == "media.ready.c1")
        .unwrap()
        .body;
    assert_eq!(ready["status"], "ready");
    assert!(ready["variants"]["thumbnail"].is_object(), "{ready}");
    let erased: Vec<&Value> = messages
        .iter()
        .filter(|m| m.routing_key == "media.erased.c1")
        .map(|m| &m.body)
        .collect();
    let reason = |id: &str| erased.iter().find(|b| b["id"] == id).unwrap()["reason"].clone();
    assert_eq!(reason(&photo_id), "unsent");
    assert_eq!(reason(&failed_id), "chat_erased");
    let failed_event = &messages
        .iter()
        .find(|m| m.routing_key == "media.failed.c1")
        .unwrap()
        .body;
    assert_eq!(failed_event["error"]["code"], "too_many_pixels");
}

/// The settings of a `satchel serve` process on the test's PostgreSQL and RabbitMQ.
fn node_env<'a>(
    database: &'a str,
    amqp: &'a str,
    prefix: &'a str,
    hook: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SATCHEL_API_TOKENS", TOKEN),
        ("SATCHEL_DATABASE_URL", database),
        ("SATCHEL_AMQP_URL", amqp),
        ("SATCHEL_AMQP_PREFIX", prefix),
        ("SATCHEL_WEBHOOK_URL", hook),
        ("SATCHEL_WEBHOOK_SECRET", SECRET),
    ]
}

#[tokio::test]
async fn a_node_killed_mid_burst_delivers_every_event_to_the_exchange_and_the_webhook_after_restart(
) {
    let database = TestDatabase::create().await;
    let prefix = fresh_prefix();
    let mut hook = crate::events::receiver_pausing(|_| false, |_| Duration::from_secs(1)).await;
    let amqp = amqp_url();
    let _objects = TestBroker::new(&amqp, &prefix);
    let env = node_env(&database.url, &amqp, &prefix, &hook.url);
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_node(&["serve"], dir.path(), env.clone()).await;
    let mut consumer = Consumer::bind(&prefix).await;
    let ids = crate::processes::upload_many(&node, 40, "not-an-image.txt", "txt").await;
    kill(&mut node);

    let _node = start_node(&["serve"], dir.path(), env).await;
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let messages = consumer
        .until(Duration::from_secs(60), |seen| {
            let got: HashSet<&str> = seen
                .iter()
                .map(|m| m.body["id"].as_str().unwrap())
                .collect();
            wanted.is_subset(&got)
        })
        .await;
    assert!(messages.iter().all(|m| m.routing_key == "media.ready.c1"));
    hook.accepted_until(Duration::from_secs(60), |seen| {
        let got: HashSet<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
        // Those the receiver took before the kill were removed from the outbox; the rest
        // come now. The test's receiver is not restarted, so it saw them all.
        wanted.is_subset(&got)
    })
    .await;
}

#[tokio::test]
async fn two_nodes_on_one_outbox_send_each_event_once() {
    let database = TestDatabase::create().await;
    let prefix = fresh_prefix();
    let mut hook = receiver(|_| false).await;
    let amqp = amqp_url();
    let _objects = TestBroker::new(&amqp, &prefix);
    let env = node_env(&database.url, &amqp, &prefix, &hook.url);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&["serve"], dir_a.path(), env.clone()).await;
    let _b = start_node(&["serve"], dir_b.path(), env).await;
    let mut consumer = Consumer::bind(&prefix).await;
    let ids = crate::processes::upload_many(&a, 60, "not-an-image.txt", "txt").await;
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let messages = consumer
        .until(Duration::from_secs(60), |seen| {
            let got: HashSet<&str> = seen
                .iter()
                .map(|m| m.body["id"].as_str().unwrap())
                .collect();
            wanted.is_subset(&got)
        })
        .await;
    let hooks = hook
        .accepted_until(Duration::from_secs(60), |seen| {
            let got: HashSet<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
            wanted.is_subset(&got)
        })
        .await;
    // Anything sent twice would arrive within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut extra = 0;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(100), consumer.consumer.next()).await
    {
        extra += 1;
    }
    let extra_hooks = std::iter::from_fn(|| hook.deliveries.try_recv().ok()).count();
    assert_eq!(
        messages.len() + extra,
        ids.len(),
        "the exchange got duplicates"
    );
    assert_eq!(
        hooks.len() + extra_hooks,
        ids.len(),
        "the webhook got duplicates"
    );
}
