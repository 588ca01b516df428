//! Erasing media and chats: catalog rows first (so links stop working at once, in one
//! transaction that also records the objects as garbage), then the objects. Whatever storage
//! fails to delete now stays recorded and the sweeper tries again.

use crate::catalog::Garbage;
use crate::domain::{ChatId, MediaId};
use crate::state::AppState;

/// Erases one media; `false` if there was none.
pub async fn media(state: &AppState, id: &MediaId) -> anyhow::Result<bool> {
    if state.catalog.delete_media(id).await?.is_none() {
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

/// Deletes recorded garbage from storage; failures are logged and left for the next round.
pub async fn collect_garbage(state: &AppState) {
    let items = match state.catalog.garbage(100).await {
        Ok(items) => items,
        Err(e) => return tracing::warn!(error = %e, "cannot list garbage"),
    };
    for Garbage { id, bucket, prefix } in items {
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
                tracing::warn!(error = %e, bucket, ?prefix, "cannot delete objects; will retry")
            }
        }
    }
}
