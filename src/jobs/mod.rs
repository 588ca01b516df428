//! Running jobs: one step that turns a queued job into an outcome ([`run::run_job`]), and the
//! pool of workers that feed it ([`pool::WorkerPool`]).

pub mod budgets;
pub mod host;
pub mod isolate;
pub mod pool;
pub mod run;
pub mod sandbox;

pub use budgets::Budgets;
pub use pool::WorkerPool;
pub use run::{run_job, Outcome};

use crate::catalog::JobResult;
use crate::domain::{MediaError, MediaId};
use crate::queue::DeadLetters;
use crate::state::AppState;
use async_trait::async_trait;

/// Fails the media of a job that the queue gave up on (`dead_lettered`), and says so.
pub struct GiveUp(pub AppState);

#[async_trait]
impl DeadLetters for GiveUp {
    async fn given_up(&self, id: &MediaId) {
        let error = MediaError {
            code: crate::codes::media::DEAD_LETTERED.code.into(),
            message: "processing crashed repeatedly; the job was given up".into(),
        };
        match self
            .0
            .catalog
            .finish_job(id, JobResult::Failed(error))
            .await
        {
            // The catalog wrote its media.failed event in the same transaction.
            Ok(Some(_)) => tracing::warn!(media_id = %id, "job dead-lettered; media failed"),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(media_id = %id, error = %e, "cannot mark a dead-lettered media failed")
            }
        }
    }
}
