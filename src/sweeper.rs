//! Background housekeeping: erases media whose `ttl_seconds` ran out (secret chats), ends
//! resumable uploads past `Upload-Expires` (their bytes become garbage) and retries storage
//! deletions that failed before. A [`Task`] of the background driver.

use crate::background::{Step, Task};
use crate::state::AppState;
use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub struct Sweeper {
    state: AppState,
    tick: Interval,
}

impl Sweeper {
    /// Sweeps at once, then every `sweep_interval`.
    pub fn new(state: AppState) -> Self {
        let every = state.config.sweep_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { state, tick }
    }
}

#[async_trait]
impl Task for Sweeper {
    fn name(&self) -> &'static str {
        "sweeper"
    }

    async fn step(&mut self, _stop: &CancellationToken) -> anyhow::Result<Step> {
        sweep(&self.state).await;
        Ok(Step::Idle)
    }

    async fn wait(&mut self) {
        self.tick.tick().await;
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
                match crate::usecase::erase::media(state, &id, crate::domain::EraseReason::Expired)
                    .await
                {
                    Ok(_) => tracing::info!(media_id = %id, "expired media erased"),
                    Err(e) => {
                        tracing::warn!(media_id = %id, error = %e, "cannot erase expired media")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list expired media"),
    }
    match crate::usecase::tus::sweep(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(uploads = n, "expired resumable uploads ended"),
        Err(e) => tracing::warn!(error = %e, "cannot end expired resumable uploads"),
    }
    crate::usecase::erase::collect_garbage(state).await;
}
