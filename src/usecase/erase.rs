//! Erasing media and chats: catalog rows first (so links stop working at once, in one
//! transaction that also records the objects as garbage), then the objects. Whatever storage
//! fails to delete now stays recorded and the sweeper tries again.

use crate::catalog::Garbage;
use crate::domain::{ChatId, EraseReason, MediaId};
use crate::state::AppState;

/// Erases one media (its `media.erased` event says why); `false` if there was none.
pub async fn media(state: &AppState, id: &MediaId, reason: EraseReason) -> anyhow::Result<bool> {
    if state.catalog.delete_media(id, reason).await?.is_none() {
        return Ok(false);
    }
    collect_garbage(state).await;
    Ok(true)
}

pub async fn chat(state: &AppState, chat: &ChatId) -> anyhow::Result<()> {
    state.catalog.erase_chat(chat).await?;
    collect_garbage(state).await;
    Ok(())
}

/// From this many failed attempts on, a garbage row is logged as an error.
const KEEPS_FAILING: u32 = 10;

/// Each row backs off on its own: 2^attempts seconds, at most an hour.
fn retry_after(attempts: u32) -> std::time::Duration {
    std::time::Duration::from_secs(2u64.saturating_pow(attempts).min(3600))
}

/// Deletes the garbage rows that are due from storage. A row that fails is counted
/// (`satchel_garbage_failures_total`) and backs off on its own schedule, so rows that keep
/// failing never hold back the others.
pub async fn collect_garbage(state: &AppState) {
    let items = match state.catalog.garbage(100).await {
        Ok(items) => items,
        Err(e) => return tracing::warn!(error = %e, "cannot list garbage"),
    };
    for Garbage {
        id,
        bucket,
        prefix,
        attempts,
    } in items
    {
        let deleted = match &prefix {
            Some(prefix) => state.store.delete_prefix(&bucket, prefix).await,
            None => state.store.delete_bucket(&bucket).await,
        };
        match deleted {
            Ok(()) => {
                if let Err(e) = state.catalog.remove_garbage(id).await {
                    tracing::warn!(error = %e, "cannot clear a garbage record");
                }
            }
            Err(e) => {
                let attempts = attempts + 1;
                let after = retry_after(attempts);
                state.metrics.garbage_failures.inc();
                match attempts >= KEEPS_FAILING {
                    true => {
                        tracing::error!(error = %e, bucket, ?prefix, attempts, ?after, "objects keep failing to delete; will retry")
                    }
                    false => {
                        tracing::warn!(error = %e, bucket, ?prefix, attempts, ?after, "cannot delete objects; will retry")
                    }
                }
                if let Err(e) = state.catalog.garbage_failed(id, after).await {
                    tracing::warn!(error = %e, "cannot record a failed deletion");
                }
            }
        }
    }
}
