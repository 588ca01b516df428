//! Running jobs: one step that turns a queued job into an outcome ([`run::run_job`]), and the
//! pool of workers that feed it ([`pool::WorkerPool`]).

pub mod isolate;
pub mod pool;
pub mod run;
pub mod sandbox;

pub use pool::WorkerPool;
pub use run::{run_job, Outcome};

use crate::catalog::JobResult;
use crate::domain::{Kind, MediaError, MediaId};
use crate::queue::DeadLetters;
use crate::state::AppState;
use async_trait::async_trait;
use satchel_workers::Presets;
use std::time::Duration;

/// How long one job of each kind may run before it is killed: the larger of
/// `job_timeout_seconds` and the preset's own `max_job_seconds` (audio and video have one), so
/// a preset that allows ten-minute video jobs is not cut short by a five-minute default.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    image: Duration,
    audio: Duration,
    video: Duration,
}

impl Budgets {
    pub fn new(job_timeout: Duration, presets: &Presets) -> Self {
        let at_least = |seconds: u32| job_timeout.max(Duration::from_secs(seconds.into()));
        Self {
            image: job_timeout,
            audio: at_least(presets.audio.max_job_seconds),
            video: at_least(presets.video.max_job_seconds),
        }
    }

    pub fn of(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Image | Kind::File => self.image,
            Kind::Audio => self.audio,
            Kind::Video => self.video,
        }
    }

    /// The longest of `kinds`' budgets: what a worker serving them leases a job for, less the
    /// margin.
    pub fn longest(&self, kinds: &[Kind]) -> Duration {
        kinds
            .iter()
            .map(|k| self.of(*k))
            .max()
            .unwrap_or(self.image)
    }
}

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
            Ok(Some(media)) => {
                tracing::warn!(media_id = %id, "job dead-lettered; media failed");
                self.0.events.status_changed(&media);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(media_id = %id, error = %e, "cannot mark a dead-lettered media failed")
            }
        }
    }
}
