//! The event outbox against the bare broker, side by side in one run (issue 13's figures):
//!
//! 1. the upload path: `insert_media` of a ready file without and with its event row (what
//!    writing the event costs each upload);
//! 2. bare: N events published straight through satchel's broker channel (publisher
//!    confirms, persistent, batches of 200 awaited together) to `<prefix>.events`, a durable
//!    queue bound to it;
//! 3. the outbox: the same N events written to the catalog, then delivered by satchel's
//!    `Delivery` loop (claim, publish, confirm, delete) until none is left.
//!
//! SATCHEL_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//! [SATCHEL_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench] \
//!   cargo run -p satchel-bench --example outbox -- [N]
//!
//! Without SATCHEL_DATABASE_URL the catalog is SQLite in a temporary directory.

use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use satchel::background::{Step, Task};
use satchel::catalog::{Catalog, ChatRecord, NewMedia, SqlCatalog};
use satchel::domain::{
    ChatId, Kind, Media, MediaId, MediaMetadata, NewEvent, Sink, Status, UserId,
};
use satchel::events::delivery::Delivery;
use satchel::events::exchange::Exchange;
use satchel::queue::{EventMessage, JobQueue};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "satchel-bench-outbox";

fn media(chat: &ChatId) -> Media {
    Media {
        id: MediaId::generate(),
        chat_id: chat.clone(),
        uploader: UserId::parse("u1").unwrap(),
        filename: "note.txt".into(),
        kind: Kind::File,
        mime: "text/plain".into(),
        size: 1234,
        sha256: "0".repeat(64),
        uploaded_sha256: "0".repeat(64),
        created_at: time::OffsetDateTime::now_utc(),
        expires_at: None,
        status: Status::Ready,
        error: None,
        metadata: MediaMetadata::default(),
        placeholder: None,
        variants: BTreeMap::new(),
    }
}

/// Mean time of `n` inserts of ready files into `chat` on `catalog`.
async fn inserts(catalog: &SqlCatalog, chat: &str, n: usize) -> anyhow::Result<Duration> {
    let chat = ChatId::parse(chat)?;
    let record = ChatRecord {
        bucket: format!("b-{}", ulid::Ulid::new().to_string().to_lowercase()),
        generation: ulid::Ulid::new().to_string(),
    };
    let record = catalog.ensure_chat(&chat, &record).await?;
    let started = Instant::now();
    for _ in 0..n {
        catalog
            .insert_media(NewMedia {
                media: media(&chat),
                bucket: record.bucket.clone(),
                generation: record.generation.clone(),
                idempotency_key: None,
                quota: Default::default(),
            })
            .await?;
    }
    Ok(started.elapsed() / n as u32)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5000);
    let amqp =
        std::env::var("SATCHEL_AMQP_URL").map_err(|_| anyhow::anyhow!("set SATCHEL_AMQP_URL"))?;
    let dir = tempfile::tempdir()?;
    let database = std::env::var("SATCHEL_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("catalog.db").display()));
    let config = satchel::Config::load_from(
        None,
        [
            ("SATCHEL_AMQP_URL".to_owned(), amqp.clone()),
            ("SATCHEL_AMQP_PREFIX".to_owned(), PREFIX.to_owned()),
            (
                "SATCHEL_DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
        ]
        .into_iter(),
    )
    .map_err(anyhow::Error::msg)?;
    let plain = SqlCatalog::open(&database, 10, Vec::new()).await?;
    let with_events = Arc::new(SqlCatalog::open(&database, 10, vec![Sink::Amqp]).await?);
    let metrics = Arc::new(satchel::metrics::Metrics::default());
    satchel::tls::install_provider();
    let trust = satchel::tls::Trust::load(None)?;
    let queue = satchel::queue::AmqpQueue::start(
        &amqp,
        &config,
        with_events.clone(),
        1,
        metrics.clone(),
        &trust,
    );
    let sink = queue
        .event_sink()
        .expect("a broker queue has an event sink");
    sink.declare().await?;

    // A durable queue on the exchange, so every confirm means "written to a queue".
    let connection =
        lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let queue_name = format!("{PREFIX}.consumer");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(&queue_name, durable, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            &queue_name,
            &format!("{PREFIX}.events"),
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // 1. The upload path's catalog write, without and with the event row (warmed up first).
    inserts(&plain, "warm", 200).await?;
    let without = inserts(&plain, "plain", n.min(2000)).await?;
    let with = inserts(&with_events, "evented", n.min(2000)).await?;
    // Those inserts wrote events; deliver them so the outbox run starts empty.
    let mut delivery = Delivery::new(
        with_events.clone(),
        Arc::new(Exchange {
            sink: sink.clone(),
            secrets: vec!["bench-secret-0123456789abcdefghijkl".into()],
        }),
        metrics,
        "bench".into(),
    );
    let stop = CancellationToken::new();
    while delivery.step(&stop).await? == Step::Busy {}

    // 2. Bare: the same channel, the same bodies, no catalog.
    let chat = ChatId::parse("bare")?;
    let events: Vec<NewEvent> = (0..n)
        .map(|_| NewEvent::status(&media(&chat)).unwrap())
        .collect();
    let started = Instant::now();
    for batch in events.chunks(200) {
        let messages: Vec<EventMessage> = batch
            .iter()
            .map(|e| EventMessage {
                routing_key: format!("{}.{}", e.name, e.chat_id.as_str()),
                event_id: &e.event_id,
                event: e.name,
                signature: satchel::events::sign(
                    &["bench-secret-0123456789abcdefghijkl".into()],
                    0,
                    e.body.as_bytes(),
                ),
                body: e.body.as_bytes(),
            })
            .collect();
        for result in sink.publish_events(&messages).await {
            result?;
        }
    }
    let bare = started.elapsed();

    // 3. The outbox: n events written (by uploads), then delivered by the loop.
    inserts(&with_events, "outbox", n).await?;
    let started = Instant::now();
    while delivery.step(&stop).await? == Step::Busy {}
    let outbox = started.elapsed();
    let left = with_events.event_counts().await?;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("catalog: {}", with_events.name());
    println!(
        "insert_media of a ready file: {:.3} ms without its event row, {:.3} ms with it (+{:.3} ms)",
        without.as_secs_f64() * 1e3,
        with.as_secs_f64() * 1e3,
        (with.as_secs_f64() - without.as_secs_f64()) * 1e3
    );
    println!(
        "bare publish with confirms: {n} in {:.2} s = {:.0}/s",
        bare.as_secs_f64(),
        rate(bare)
    );
    println!(
        "outbox delivery (claim, publish, confirm, delete): {n} in {:.2} s = {:.0}/s ({:.2}x the bare rate)",
        outbox.as_secs_f64(),
        rate(outbox),
        rate(outbox) / rate(bare)
    );
    println!("left in the outbox: {:?}", left.pending);

    channel
        .queue_delete(&queue_name, QueueDeleteOptions::default())
        .await?;
    queue.close().await;
    Ok(())
}
