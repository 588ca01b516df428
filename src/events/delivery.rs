//! The delivery loop of one sink: a [`Task`] of the background driver on every node.

use crate::background::{Step, Task};
use crate::catalog::{Catalog, OutboxEvent, Redelivery};
use crate::domain::Sink;
use crate::metrics::Metrics;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A node that dies while delivering leaves its rows leased this long (a restart of the
/// same node releases them at once). Longer than any batch takes: a webhook POST times out
/// after 10 s, a broker confirm after 10 s.
const LEASE: Duration = Duration::from_secs(60);
/// Rows written by other nodes, and retries that become due, are found by this poll.
const POLL: Duration = Duration::from_millis(500);

/// Hands events to one sink.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    fn sink(&self) -> Sink;

    /// Rows leased per step.
    fn batch(&self) -> u32;

    /// Delivers `events` (each the oldest pending one of its media, so they may go out
    /// concurrently): one result per event, in order; `Err` holds what went wrong, in words.
    async fn deliver(&self, events: &[OutboxEvent]) -> Vec<Result<(), String>>;

    /// How long a failing delivery is retried before it is marked dead; `None`: for ever
    /// (the broker's exchange: an outage must not lose events).
    fn max_age(&self) -> Option<Duration>;

    /// The pause before the retry that follows `attempts` failures in a row.
    fn backoff(&self, attempts: u32) -> Duration;
}

/// Doubling from one second, at most `ceiling`.
pub fn doubling(attempts: u32, ceiling: Duration) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(20)).min(ceiling)
}

pub struct Delivery {
    catalog: Arc<dyn Catalog>,
    transport: Arc<dyn Transport>,
    metrics: Arc<Metrics>,
    /// This node's lasting identity: the owner of its leases.
    owner: String,
    written: watch::Receiver<u64>,
}

impl Delivery {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        transport: Arc<dyn Transport>,
        metrics: Arc<Metrics>,
        owner: String,
    ) -> Self {
        let written = catalog.events_written();
        Self {
            catalog,
            transport,
            metrics,
            owner,
            written,
        }
    }

    /// What a failed delivery of `event` does next: its age limit, else its backoff (never
    /// past the limit).
    fn next_after_failure(&self, event: &OutboxEvent, now_ms: i64) -> Redelivery {
        let attempts = event.attempts + 1;
        let pause = self.transport.backoff(attempts);
        match self.transport.max_age() {
            None => Redelivery::After(pause),
            Some(max_age) => {
                let age =
                    Duration::from_millis(now_ms.saturating_sub(event.queued_at).max(0) as u64);
                match max_age.checked_sub(age) {
                    Some(left) if !left.is_zero() => Redelivery::After(pause.min(left)),
                    _ => Redelivery::Dead,
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[async_trait]
impl Task for Delivery {
    fn name(&self) -> &'static str {
        match self.transport.sink() {
            Sink::Amqp => "event_delivery_amqp",
            Sink::Webhook => "event_delivery_webhook",
        }
    }

    async fn step(&mut self, _stop: &CancellationToken) -> anyhow::Result<Step> {
        // Whatever is written from here on wakes the next wait.
        self.written.borrow_and_update();
        let sink = self.transport.sink();
        let events = self
            .catalog
            .claim_events(sink, self.transport.batch(), LEASE, &self.owner)
            .await?;
        if events.is_empty() {
            return Ok(Step::Idle);
        }
        let results = self.transport.deliver(&events).await;
        let now = now_ms();
        let label = sink.as_str();
        let mut delivered = Vec::with_capacity(events.len());
        for (event, result) in events.iter().zip(results) {
            match result {
                Ok(()) => {
                    delivered.push(event.seq);
                    let latency = now.saturating_sub(event.created_at).max(0) as f64 / 1000.0;
                    self.metrics.event_delivered(label, latency);
                }
                Err(error) => {
                    let next = self.next_after_failure(event, now);
                    self.metrics
                        .event_failed(label, matches!(next, Redelivery::Dead));
                    match next {
                        Redelivery::Dead => tracing::error!(
                            sink = label,
                            event_id = %event.event_id,
                            event = %event.event,
                            %error,
                            "event delivery given up: marked dead (POST /v1/events/dead/retry re-queues it)"
                        ),
                        Redelivery::After(pause) => tracing::warn!(
                            sink = label,
                            event_id = %event.event_id,
                            %error,
                            ?pause,
                            "event delivery failed; will retry"
                        ),
                    }
                    self.catalog.event_failed(event.seq, &error, next).await?;
                }
            }
        }
        self.catalog.events_delivered(&delivered).await?;
        Ok(Step::Busy)
    }

    async fn wait(&mut self) {
        match tokio::time::timeout(POLL, self.written.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            // The catalog is gone (shutting down): only the poll is left.
            Ok(Err(_)) => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_its_ceiling() {
        let ceiling = Duration::from_secs(300);
        let pauses: Vec<u64> = (1..=10).map(|n| doubling(n, ceiling).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(doubling(u32::MAX, ceiling), ceiling);
    }
}
