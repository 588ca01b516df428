//! Each kind's job time budget.

use crate::domain::Kind;
use satchel_workers::Presets;
use std::time::Duration;

/// How long one job of each kind may run before it is killed: the larger of
/// `job_timeout_seconds` and the preset's own `max_job_seconds` (audio, video and image
/// animations have one), so a preset that allows ten-minute video jobs is not cut short by a
/// five-minute default.
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
            image: at_least(presets.image.animation.max_job_seconds),
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
