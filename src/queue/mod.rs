//! The job queue: how a stored upload reaches a worker.
//!
//! Every job is first written to the catalog, in the transaction that records its media, so a
//! job exists exactly when a media is `processing`. The embedded queue hands those rows straight
//! to the in-process worker pool; a broker-backed queue relays them to RabbitMQ.

//!
//! Nothing outside this module sees the broker's concrete types: the service talks to a
//! [`JobQueue`], hears of jobs a broker gave up on through [`DeadLetters`], and reaches the
//! broker's event exchange through an [`EventSink`].

mod amqp;
mod embedded;

pub use amqp::AmqpQueue;
pub use embedded::EmbeddedQueue;

use crate::catalog::Job;
use crate::domain::{Kind, MediaId};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// What the service does with a job its queue gave up on (a broker's dead-letter queue: the
/// job's consumer died too many times).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    async fn given_up(&self, id: &MediaId);
}

/// One event as the broker's exchange gets it.
pub struct EventMessage<'a> {
    /// `<event>.<chat_id>`.
    pub routing_key: String,
    /// The message's `message-id` property: consumers dedupe on it.
    pub event_id: &'a str,
    /// The message's `type` property: `media.ready`, ...
    pub event: &'a str,
    /// The `satchel-signature` header: as a webhook's, so a consumer can tell satchel's
    /// events from anything else published to the exchange.
    pub signature: String,
    pub body: &'a [u8],
}

/// The broker's `<prefix>.events` topic exchange.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Declares the exchange (durable), so consumers can bind before the first event.
    async fn declare(&self) -> anyhow::Result<()>;

    /// Publishes every message persistently and waits for the broker's confirms: one result
    /// per message, in order.
    async fn publish_events(&self, messages: &[EventMessage<'_>]) -> Vec<anyhow::Result<()>>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, QueueError>;

#[async_trait]
pub trait JobQueue: Send + Sync {
    fn name(&self) -> &'static str;

    /// A transaction that added jobs has committed: wake consumers (or the relay).
    fn notify(&self);

    /// Waits for the next job of one of `kinds`, leased to the caller for `lease`.
    ///
    /// Cancel-safe: dropping the future before it returns loses no job.
    async fn next(&self, kinds: &[Kind], lease: Duration) -> Result<Job>;

    /// The job's outcome is recorded in the catalog; it must not be delivered again.
    async fn ack(&self, job: &Job) -> Result<()>;

    /// Deliver the job again after `after`.
    async fn retry(&self, job: &Job, after: Duration) -> Result<()>;

    /// Whether the queue itself counts the deliveries of a job handed back undone and gives
    /// it up past a limit (a broker's delivery limit with a dead-letter queue).
    fn counts_deliveries(&self) -> bool {
        false
    }

    /// The job's transform crashed: deliver it again at once, as a failed delivery.
    async fn hand_back(&self, job: &Job) -> Result<()> {
        self.retry(job, Duration::ZERO).await
    }

    /// At start-up and after shutdown: make jobs that this process held runnable again.
    /// Returns how many.
    async fn recover(&self) -> Result<u64>;

    /// Jobs waiting or running.
    async fn depth(&self) -> Result<u64>;

    async fn check(&self) -> Result<()>;

    /// Runs `sink` for every job the queue gives up on, from now until [`close`](Self::close).
    /// Only a process that runs workers watches. A queue that gives up on nothing (the embedded
    /// one fails such jobs itself) ignores this.
    fn watch_dead_letters(&self, sink: Arc<dyn DeadLetters>) {
        let _ = sink;
    }

    /// The broker's event exchange, if the queue has one.
    fn event_sink(&self) -> Option<Arc<dyn EventSink>> {
        None
    }

    /// At shutdown, once the worker pool has recorded what it will: closes every connection
    /// the queue holds. Unacked deliveries go back to the broker.
    async fn close(&self) {}
}
