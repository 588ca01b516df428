//! The outbox relay: publishes catalog job rows to the broker until each is confirmed.
//! Every process with a broker runs one; two relays may publish a row twice, which the
//! consumers tolerate (a job is idempotent and a finished job's duplicate is dropped).
//!
//! The broker's queues are first come, first served, so fairness across chats is decided
//! here, before a job enters one: a chat has at most `per_chat` jobs of a kind in the broker
//! or running, and the rest wait in the catalog, where the chats take turns. One chat's
//! 500 photos thus put at most `per_chat` of them ahead of another chat's photo.

use super::Broker;
use crate::background::{Step, Task};
use crate::catalog::Catalog;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows that become due later (retries) are found by this poll.
const POLL: Duration = Duration::from_secs(1);

pub struct Relay {
    pub broker: Arc<Broker>,
    pub catalog: Arc<dyn Catalog>,
    /// Nudged when a transaction that added jobs commits, and when a job ends (its chat may
    /// send the next).
    pub wake: Arc<Notify>,
    /// Jobs of one chat and kind in the broker or running at most.
    pub per_chat: u32,
}

#[async_trait]
impl Task for Relay {
    fn name(&self) -> &'static str {
        "outbox_relay"
    }

    /// Publishes every due row; a broker that is down fails the step, and only the driver's
    /// backoff ends the pause that follows (new uploads must not turn it into a busy loop).
    async fn step(&mut self, _stop: &CancellationToken) -> anyhow::Result<Step> {
        loop {
            let batch = self.catalog.outbox(100, self.per_chat).await?;
            if batch.is_empty() {
                return Ok(Step::Idle);
            }
            for job in &batch {
                self.broker.publish_job(job).await?;
                self.catalog.mark_published(&job.media_id).await?;
            }
        }
    }

    async fn wait(&mut self) {
        let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
    }
}
