//! A request's hold on a resumable upload, so that two `PATCH`es never append at once.

use super::now_ms;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::state::AppState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a request holds an upload without renewing; renewed every [`RENEW_EVERY`].
const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// A request's hold on an upload: taken with a conditional `UPDATE`, renewed in the
/// background every [`RENEW_EVERY`]; lost if another request took the upload after the lease
/// ran out (this process stalled), which [`held`](Self::held) then reports.
pub(super) struct Lease {
    id: String,
    pub(super) token: String,
    catalog: Arc<dyn Catalog>,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Tokens are `<node>:<ulid>`, so that a node restarted after a crash lets go of what
    /// it held at once ([`Catalog::release_tus_leases`]).
    pub(super) async fn take(state: &AppState, id: &str) -> Result<Self, ApiError> {
        let catalog = state.catalog.clone();
        let token = format!("{}:{}", state.node, ulid::Ulid::new());
        let now = now_ms();
        if !catalog
            .lease_tus_upload(id, &token, now + LEASE.as_millis() as i64, now)
            .await?
        {
            return Err(super::not_held(catalog.tus_upload(id).await?));
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn({
            let (catalog, id, token, lost) =
                (catalog.clone(), id.to_owned(), token.clone(), lost.clone());
            async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let now = now_ms();
                    let until = now + LEASE.as_millis() as i64;
                    // A catalog outage is not a lost lease: the next renewal may succeed.
                    if let Ok(false) = catalog.lease_tus_upload(&id, &token, until, now).await {
                        lost.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        Ok(Self {
            id: id.to_owned(),
            token,
            catalog,
            lost,
            renewer,
        })
    }

    pub(super) fn held(&self) -> Result<(), ApiError> {
        match self.lost.load(Ordering::Relaxed) {
            true => Err(ApiError::UploadBusy),
            false => Ok(()),
        }
    }

    pub(super) async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.catalog.release_tus_upload(&self.id, &self.token).await {
            tracing::warn!(upload = self.id, error = %e, "cannot release an upload's lease; it runs out");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
