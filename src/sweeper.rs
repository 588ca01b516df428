//! Background housekeeping: erases media whose `ttl_seconds` ran out (secret chats) and retries
//! storage deletions that failed before.

use crate::state::AppState;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub async fn run(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => sweep(&state).await,
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn sweep(state: &AppState) {
    match state
        .catalog
        .expired_media(OffsetDateTime::now_utc(), 500)
        .await
    {
        Ok(ids) => {
            for id in ids {
                match crate::erase::media(state, &id).await {
                    Ok(_) => tracing::info!(media_id = %id, "expired media erased"),
                    Err(e) => {
                        tracing::warn!(media_id = %id, error = %e, "cannot erase expired media")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list expired media"),
    }
    crate::erase::collect_garbage(state).await;
}
