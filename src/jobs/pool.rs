//! The worker pool: N tasks, each taking one job at a time from the queue.
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
//! Each job runs in a task of its own, so a panic fails that job's task, not the worker loop.

use super::run::run_job;
use crate::domain::Kind;
use crate::state::AppState;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct WorkerPool {
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl WorkerPool {
    pub fn spawn(state: AppState, kinds: Vec<Kind>, concurrency: usize) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for n in 0..concurrency {
            tasks.spawn(worker(state.clone(), kinds.clone(), stop.clone(), n));
        }
        Self { tasks, stop }
    }

    /// Stops taking jobs, waits up to `grace` for running ones, then aborts the rest.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = self.tasks.len(),
                "jobs still running after the grace period; they will run again on restart"
            );
            self.tasks.shutdown().await;
        }
    }
}

async fn worker(state: AppState, kinds: Vec<Kind>, stop: CancellationToken, n: usize) {
    // The lease outlives the job's time budget, so a live job is never handed out twice.
    let lease = state.config.job_timeout + Duration::from_secs(60);
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = state.queue.next(&kinds, lease) => next,
        };
        let job = match next {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(error = %e, worker = n, "queue unavailable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let task_state = state.clone();
        let run = tokio::spawn(async move { run_job(&task_state, &job).await });
        if let Err(e) = run.await {
            tracing::error!(error = %e, worker = n, "job task panicked; its lease will expire");
        }
    }
}
