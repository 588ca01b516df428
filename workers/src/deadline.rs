//! The wall-clock budget of one job, shared by every pipeline.

use crate::WorkerError;
use std::time::{Duration, Instant};

/// The wall-clock budget of one job. Checked between packets and frames and inside every read
/// of the input, so a hostile file cannot keep a worker busy past it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after_seconds(seconds: u32) -> Self {
        let budget = Duration::from_secs(u64::from(seconds.max(1)));
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    pub fn check(&self) -> Result<(), WorkerError> {
        if self.passed() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    pub fn error(&self) -> WorkerError {
        WorkerError::TimedOut(format!("over the {} s budget", self.budget.as_secs()))
    }
}
