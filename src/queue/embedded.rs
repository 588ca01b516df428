//! The embedded queue: jobs are catalog rows, leased by the in-process worker pool.

use super::{JobQueue, QueueError, Result};
use crate::catalog::{Catalog, Job};
use crate::domain::Kind;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long an idle consumer sleeps before looking again without a nudge, so that retries
/// whose delay has passed are picked up.
const POLL: Duration = Duration::from_millis(500);

pub struct EmbeddedQueue {
    catalog: Arc<dyn Catalog>,
    wake: Notify,
    /// This process's lasting identity (kept in its data directory): the owner of its leases.
    node: String,
    /// `max_jobs_in_flight_per_chat`: how many jobs of one chat may run at once.
    per_chat: Option<u32>,
}

impl EmbeddedQueue {
    pub fn new(catalog: Arc<dyn Catalog>, node: String, per_chat: Option<u32>) -> Self {
        Self {
            catalog,
            wake: Notify::new(),
            node,
            per_chat,
        }
    }
}

fn unavailable(e: crate::catalog::CatalogError) -> QueueError {
    QueueError::Unavailable(e.into())
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn notify(&self) {
        self.wake.notify_waiters();
    }

    async fn next(&self, kinds: &[Kind], lease: Duration) -> Result<Job> {
        loop {
            // Registered before looking, so a notify between the look and the wait is not lost.
            let woken = self.wake.notified();
            match self
                .catalog
                .claim_job(kinds, lease, &self.node, self.per_chat)
                .await
            {
                Ok(Some(job)) => return Ok(job),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim a job; will look again"),
            }
            let _ = tokio::time::timeout(POLL, woken).await;
        }
    }

    async fn ack(&self, _job: &Job) -> Result<()> {
        // `Catalog::finish_job` already dropped the row in the outcome's transaction.
        Ok(())
    }

    async fn retry(&self, job: &Job, after: Duration) -> Result<()> {
        self.catalog
            .retry_job(&job.media_id, after)
            .await
            .map_err(unavailable)
    }

    async fn recover(&self) -> Result<u64> {
        // Whatever this node was running when it last stopped runs again now; the leases of
        // other processes sharing the catalog run out on their own if those died.
        self.catalog
            .release_leases(&self.node)
            .await
            .map_err(unavailable)
    }

    async fn depth(&self) -> Result<u64> {
        self.catalog.queue_depth().await.map_err(unavailable)
    }

    async fn check(&self) -> Result<()> {
        self.catalog.ping().await.map_err(unavailable)
    }
}
