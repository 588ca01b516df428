//! The worker pool: N background tasks, each taking one job at a time from the queue.
//!
//! # Cancellation
//! Shutdown cancels a worker only while it *waits* for a job ([`JobQueue::next`] is
//! cancel-safe: nothing is leased yet). A job that has started is never cancelled by the
//! shutdown signal: [`WorkerPool::shutdown`] waits up to the grace period for running jobs to
//! record their outcome. Past the grace period the remaining tasks are aborted at their next
//! await point; their jobs keep their catalog rows and leases, so they run again from the
//! start (after the lease, or at once on the next start of an embedded process). Rerunning is
//! safe because a job writes the same keys and rows every time.
//!
//! Each job runs in a task of its own, so a panic fails that job's task, not the worker.
//!
//! [`JobQueue::next`]: crate::queue::JobQueue::next

use super::isolate::Hosts;
use super::run::run_job;
use crate::background::{Group, Step, Task};
use crate::domain::Kind;
use crate::state::AppState;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct WorkerPool {
    workers: Group,
}

impl WorkerPool {
    pub fn spawn(state: AppState, kinds: Vec<Kind>, concurrency: usize) -> Self {
        let workers = Group::new(state.metrics.clone());
        // Hosts of each kind this pool's jobs start in; an image pool's FFmpeg hosts (for
        // animations) start with the first animation.
        let first: Vec<Hosts> = kinds
            .iter()
            .filter_map(|k| k.pipeline())
            .map(Hosts::first_for)
            .collect();
        for hosts in [Hosts::Stills, Hosts::Av] {
            if first.contains(&hosts) {
                state.transforms.warm(hosts, concurrency);
            }
        }
        for n in 0..concurrency {
            workers.spawn(Worker {
                state: state.clone(),
                kinds: kinds.clone(),
                n,
            });
        }
        // Jobs the broker gave up on fail their media here (a queue without a broker has none).
        state
            .queue
            .watch_dead_letters(Arc::new(super::GiveUp(state.clone())));
        Self { workers }
    }

    /// Stops taking jobs, waits up to `grace` for running ones, then aborts the rest.
    pub async fn shutdown(self, grace: Duration) {
        let aborted = self.workers.shutdown(grace).await;
        if aborted > 0 {
            tracing::warn!(
                running = aborted,
                "jobs still running after the grace period; they will run again on restart"
            );
        }
    }
}

struct Worker {
    state: AppState,
    kinds: Vec<Kind>,
    n: usize,
}

#[async_trait]
impl Task for Worker {
    fn name(&self) -> &'static str {
        "worker"
    }

    /// Waits for a job (the only point where shutdown ends a worker), then runs it to its end.
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step> {
        // The lease outlives the job's time budget, so a live job is never handed out twice.
        let lease = self.state.budgets.longest(&self.kinds) + Duration::from_secs(60);
        let Some(next) = stop
            .run_until_cancelled(self.state.queue.next(&self.kinds, lease))
            .await
        else {
            return Ok(Step::Done);
        };
        let job = next?;
        let state = self.state.clone();
        let run = tokio::spawn(async move { run_job(&state, &job).await });
        if let Err(e) = run.await {
            tracing::error!(error = %e, worker = self.n, "job task panicked; its lease will expire");
        }
        Ok(Step::Busy)
    }
}
