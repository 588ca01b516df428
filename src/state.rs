use crate::catalog::Catalog;
use crate::config::Config;
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::queue::JobQueue;
use crate::storage::BlobStore;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything a request handler or a job needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub catalog: Arc<dyn Catalog>,
    pub store: Arc<dyn BlobStore>,
    pub queue: Arc<dyn JobQueue>,
    pub signer: Arc<LinkSigner>,
    /// SHA-256 of each accepted API token: compared in constant time, never logged.
    pub token_hashes: Arc<Vec<[u8; 32]>>,
    pub metrics: Arc<Metrics>,
    /// `/readyz`'s last answer (the backend that failed and its code, if one did), reused for
    /// a second.
    pub readiness: Arc<Memo<Option<(&'static str, crate::codes::ApiCode)>>>,
    /// Rate limits, in this process or in Redis.
    pub limits: Arc<crate::limits::Limits>,
    /// Uploads in flight on this node, against their caps.
    pub in_flight: Arc<crate::limits::InFlight>,
    /// Each kind's job time budget.
    pub budgets: crate::jobs::budgets::Budgets,
    /// Base URL of the links this service signs, without a trailing slash.
    pub public_url: Arc<str>,
    /// This node's lasting identity (`DATA_DIR/node-id`): the owner of its leases.
    pub node: Arc<str>,
    /// Scratch space for jobs: inputs fetched from storage and outputs before upload.
    pub work_dir: PathBuf,
    /// The transform hosts jobs run in (started when the first job needs one).
    pub transforms: Arc<crate::jobs::isolate::Isolation>,
}

/// A value kept for a while: the first caller after it goes stale computes it anew while the
/// others wait for that one result.
pub struct Memo<T>(tokio::sync::Mutex<Option<(std::time::Instant, T)>>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Self(tokio::sync::Mutex::new(None))
    }
}

impl<T: Clone> Memo<T> {
    /// The kept value if it is younger than `fresh_for`, else what `fresh` gives (kept).
    pub async fn get_or_refresh(
        &self,
        fresh_for: std::time::Duration,
        fresh: impl std::future::Future<Output = T>,
    ) -> T {
        let mut kept = self.0.lock().await;
        if let Some((at, value)) = &*kept {
            if at.elapsed() < fresh_for {
                return value.clone();
            }
        }
        let value = fresh.await;
        *kept = Some((std::time::Instant::now(), value.clone()));
        value
    }
}
