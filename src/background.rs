//! One driver for every background loop: the outbox relay, the broker consumers, the worker
//! pool's workers and the sweeper are each a [`Task`] run by [`drive`], which owns "loop, back
//! off after an error, stop on shutdown", logs under the task's name and counts errors in
//! `satchel_background_errors_total{task}`.
//!
//! # Cancellation
//! A [`Group`]'s stop token is the only way a task is asked to end. The driver checks it at
//! exactly three points:
//! - before each [`Task::step`]: a cancelled group runs no further step;
//! - while [`Task::wait`] waits for work after an idle step: the wait is dropped, so `wait`
//!   must be cancel-safe;
//! - while it sleeps off the backoff after a failed step.
//!
//! A step that has started is never dropped by the driver. The step gets the token and decides
//! for itself where it may end early (a consumer session ends between deliveries; a worker
//! stops only while it waits for a job, never inside one). [`Group::shutdown`] then waits up
//! to a grace period for the steps under way, and only past it aborts what is left, at its
//! next await point.

use crate::metrics::Metrics;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// There may be more work: step again at once.
    Busy,
    /// Nothing to do now: [`Task::wait`], then step again.
    Idle,
    /// The task is over (it saw the stop token, or has nothing left to do ever).
    Done,
}

#[async_trait]
pub trait Task: Send + 'static {
    /// For logs and the `task` label of metrics.
    fn name(&self) -> &'static str;

    /// One unit of work. Not dropped by the driver once started; `stop` is the group's token,
    /// for a long step to end itself at a point of its choosing.
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step>;

    /// After [`Step::Idle`]: returns when there may be work again. Cancel-safe.
    async fn wait(&mut self) {}
}

/// The pause after consecutive failures: doubling from `MIN` up to `MAX`, reset by a step that
/// succeeds.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const MIN: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// The pause to take now; the following one is twice as long, up to `MAX`.
    pub fn failed(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    pub fn succeeded(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `task` until it is done or `stop` is cancelled (see the module's cancellation points).
pub async fn drive(mut task: impl Task, stop: CancellationToken, metrics: Arc<Metrics>) {
    let name = task.name();
    let mut backoff = Backoff::new();
    while !stop.is_cancelled() {
        match task.step(&stop).await {
            Ok(Step::Busy) => backoff.succeeded(),
            Ok(Step::Idle) => {
                backoff.succeeded();
                if stop.run_until_cancelled(task.wait()).await.is_none() {
                    break;
                }
            }
            Ok(Step::Done) => break,
            // A failure caused by the shutdown itself (a closed link) is no news.
            Err(_) if stop.is_cancelled() => break,
            Err(e) => {
                let pause = backoff.failed();
                metrics.background_error(name);
                tracing::warn!(
                    task = name,
                    error = format!("{e:#}"),
                    ?pause,
                    "background task failed; retrying"
                );
                if stop
                    .run_until_cancelled(tokio::time::sleep(pause))
                    .await
                    .is_none()
                {
                    break;
                }
            }
        }
    }
    tracing::debug!(task = name, "background task ended");
}

/// Tasks that start and stop together: one stop token, and the join handles that
/// [`shutdown`](Self::shutdown) waits for.
pub struct Group {
    stop: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
    metrics: Arc<Metrics>,
}

impl Group {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            stop: CancellationToken::new(),
            tasks: Mutex::new(JoinSet::new()),
            metrics,
        }
    }

    /// Drives `task` on the runtime until it is done or the group stops. A task spawned after
    /// the group stopped runs no step.
    pub fn spawn(&self, task: impl Task) {
        let run = drive(task, self.stop.clone(), self.metrics.clone());
        self.tasks.lock().expect("not poisoned").spawn(run);
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The group's stop token: cancelled by [`shutdown`](Self::shutdown).
    pub fn token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Asks every task to stop, waits up to `grace` for the steps under way, then aborts the
    /// rest at their next await point. Returns how many were aborted.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.stop.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("not poisoned"));
        let drained = tokio::time::timeout(grace, async {
            while let Some(ended) = tasks.join_next().await {
                if let Err(e) = ended {
                    if e.is_panic() {
                        tracing::error!(error = %e, "a background task panicked");
                    }
                }
            }
        })
        .await;
        let left = tasks.len();
        if drained.is_err() {
            tasks.shutdown().await;
        }
        left
    }
}
