use crate::catalog::Catalog;
use crate::config::Config;
use crate::events::Events;
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
    pub events: Events,
    /// `/readyz`'s last answer, reused for a second.
    pub readiness: Arc<crate::http::Readiness>,
    /// Each kind's job time budget.
    pub budgets: crate::jobs::Budgets,
    /// Base URL of the links this service signs, without a trailing slash.
    pub public_url: Arc<str>,
    /// Scratch space for jobs: inputs fetched from storage and outputs before upload.
    pub work_dir: PathBuf,
}
