//! The outbox relay: publishes catalog job rows to the broker until each is confirmed.
//! Every process with a broker runs one; two relays may publish a row twice, which the
//! consumers tolerate (a job is idempotent and a finished job's duplicate is dropped).

use super::Broker;
use crate::catalog::Catalog;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Rows that become due later (retries) are found by this poll.
const POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(broker: Arc<Broker>, catalog: Arc<dyn Catalog>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let go_on = match relay_once(&broker, catalog.as_ref()).await {
            Ok(_) => {
                backoff = Duration::from_millis(250);
                let idle = tokio::time::timeout(POLL, wake.notified());
                broker.until_closed(idle).await.is_some()
            }
            Err(_) if broker.is_closing() => return,
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "outbox relay cannot reach the broker; retrying");
                // Only the backoff ends this pause: new uploads must not turn it into a busy
                // loop against a broker that is down.
                let go_on = broker.until_closed(tokio::time::sleep(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                go_on.is_some()
            }
        };
        if !go_on {
            return;
        }
    }
}

async fn relay_once(broker: &Broker, catalog: &dyn Catalog) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let batch = catalog.outbox(100).await?;
        if batch.is_empty() {
            return Ok(total);
        }
        for job in &batch {
            broker.publish_job(job).await?;
            catalog.mark_published(&job.media_id).await?;
        }
        total += batch.len();
    }
}
