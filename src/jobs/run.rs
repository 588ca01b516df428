//! One job, start to finish: fetch the original, run the worker, store the variants, record
//! the outcome. Jobs are idempotent: a rerun writes the same keys and the same rows.

use super::isolate::{Ended, Report};
use crate::catalog::{Job, JobResult};
use crate::codes::{media, Code};
use crate::domain::MediaError;
use crate::state::AppState;
use crate::storage::{original_key, variant_key, StorageError};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// The media is marked failed with this code.
    Failed(String),
    /// Put back to run again later (storage trouble, local I/O).
    Retried,
    /// The media was erased while its job waited or ran.
    Gone,
}

enum Stop {
    /// Might work next time.
    Retry(anyhow::Error),
    /// The transform's process died: maybe this input kills it every time, maybe not.
    Crashed(String),
    Fail(MediaError),
}

fn fail(code: Code, message: impl Into<String>) -> Stop {
    Stop::Fail(MediaError {
        code: code.code.into(),
        message: message.into(),
    })
}

impl From<StorageError> for Stop {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => {
                fail(media::ORIGINAL_MISSING, "the original is not in storage")
            }
            e => Stop::Retry(e.into()),
        }
    }
}

/// Runs `job` and records its outcome; never panics into the caller's task on a worker panic.
#[tracing::instrument(skip_all, fields(media_id = %job.media_id, kind = job.kind.as_str(), attempt = job.attempt))]
pub async fn run_job(state: &AppState, job: &Job) -> Outcome {
    let started = Instant::now();
    let max_attempts = state.config.job_max_attempts;
    // A broker that counts deliveries dead-letters crash loops itself (`dead_letters`).
    let result = if job.attempt > max_attempts && !state.queue.counts_deliveries() {
        Err(fail(
            media::TOO_MANY_ATTEMPTS,
            format!("gave up after {max_attempts} attempts"),
        ))
    } else {
        attempt(state, job).await
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(Stop::Crashed(why)) if state.queue.counts_deliveries() => {
            tracing::error!(why, "the transform crashed; handing the job back");
            if let Err(e) = state.queue.hand_back(job).await {
                tracing::error!(error = %e, "cannot hand the job back; the broker will");
            }
            Outcome::Retried
        }
        Err(Stop::Crashed(why)) => {
            tracing::error!(why, "the transform crashed");
            retry_or_fail(state, job, media::WORKER_CRASHED, anyhow::anyhow!(why)).await
        }
        Err(Stop::Retry(e)) => retry_or_fail(state, job, media::RETRIES_EXHAUSTED, e).await,
        Err(Stop::Fail(e)) => record_failure(state, job, e).await,
    };
    let label = match &outcome {
        Outcome::Ready => "ready",
        Outcome::Failed(_) => "failed",
        Outcome::Retried => "retried",
        Outcome::Gone => "gone",
    };
    state
        .metrics
        .job(job.kind.as_str(), label, started.elapsed().as_secs_f64());
    tracing::info!(outcome = ?outcome, took_ms = started.elapsed().as_millis() as u64, "job done");
    outcome
}

/// Runs the job again later, unless it has had all its attempts: then the media fails with
/// `code`.
async fn retry_or_fail(state: &AppState, job: &Job, code: Code, e: anyhow::Error) -> Outcome {
    let max_attempts = state.config.job_max_attempts;
    if job.attempt >= max_attempts {
        let message = format!("gave up after {max_attempts} attempts: {e}");
        return record_failure(
            state,
            job,
            MediaError {
                code: code.code.into(),
                message,
            },
        )
        .await;
    }
    let delay = Duration::from_secs(2u64.pow(job.attempt.min(8)));
    tracing::warn!(error = %format_args!("{e:#}"), ?delay, "job will be retried");
    if let Err(e) = state.queue.retry(job, delay).await {
        // The lease runs out and the job comes back anyway.
        tracing::error!(error = %e, "cannot requeue; the lease will expire instead");
    }
    Outcome::Retried
}

async fn record_failure(state: &AppState, job: &Job, error: MediaError) -> Outcome {
    let code = error.code.clone();
    tracing::warn!(code, message = %error.message, "media failed");
    match state
        .catalog
        .finish_job(&job.media_id, JobResult::Failed(error))
        .await
    {
        Ok(Some(_)) => {
            let _ = state.queue.ack(job).await;
            Outcome::Failed(code)
        }
        Ok(None) => Outcome::Gone,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the failure; the job will run again");
            Outcome::Retried
        }
    }
}

async fn attempt(state: &AppState, job: &Job) -> Result<Outcome, Stop> {
    let Some(stored) = state
        .catalog
        .get_media(&job.media_id)
        .await
        .map_err(|e| Stop::Retry(e.into()))?
    else {
        // Erased meanwhile: drop the job.
        let _ = state
            .catalog
            .finish_job(
                &job.media_id,
                JobResult::Failed(MediaError {
                    code: crate::codes::api::GONE.code.into(),
                    message: String::new(),
                }),
            )
            .await;
        return Ok(Outcome::Gone);
    };
    let Some(pipeline) = job.kind.pipeline() else {
        return Err(fail(media::UNSUPPORTED_CODEC, "files are never processed"));
    };

    let scratch = tempfile::Builder::new()
        .prefix("job-")
        .tempdir_in(&state.work_dir)
        .map_err(|e| Stop::Retry(e.into()))?;
    let input = scratch.path().join("original");
    let out_dir = scratch.path().join("out");
    std::fs::create_dir(&out_dir).map_err(|e| Stop::Retry(e.into()))?;
    state
        .store
        .fetch_to(&stored.bucket, &original_key(&job.media_id), &input)
        .await?;

    let ended = state
        .transforms
        .run(pipeline, &input, &out_dir, state.budgets.of(job.kind))
        .await
        .map_err(|e| Stop::Retry(anyhow::Error::new(e).context("cannot start the transform")))?;
    let output = match ended {
        Ended::TimedOut => return Err(fail(media::TIMED_OUT, "the job ran over its time budget")),
        Ended::Crashed(why) => return Err(Stop::Crashed(why)),
        Ended::Reported(Report::Failed {
            retryable: true,
            message,
            ..
        }) => return Err(Stop::Retry(anyhow::anyhow!(message))),
        // A worker's code, one of `satchel_workers::CODES`.
        Ended::Reported(Report::Failed { code, message, .. }) => {
            return Err(Stop::Fail(MediaError { code, message }))
        }
        Ended::Reported(Report::Done(output)) => output,
        // Never returned: `Isolation::run` runs it again where FFmpeg is, or calls it a crash.
        Ended::Reported(Report::NeedsAv) => {
            return Err(Stop::Crashed("the transform asked for FFmpeg twice".into()))
        }
    };

    let mut variants = BTreeMap::new();
    for v in &output.variants {
        let path = inside(&out_dir, &v.path)?;
        state
            .store
            .put_file(&stored.bucket, &variant_key(&job.media_id, &v.name), path)
            .await?;
        variants.insert(v.name.clone(), v.info.clone());
    }
    let result = JobResult::Ready {
        metadata: output.metadata,
        placeholder: output.placeholder,
        variants,
    };
    match state.catalog.finish_job(&job.media_id, result).await {
        Ok(Some(_)) => {
            let _ = state.queue.ack(job).await;
            Ok(Outcome::Ready)
        }
        Ok(None) => {
            // Erased while we worked: the variants we just stored must not outlive it.
            let _ = state
                .store
                .delete_prefix(&stored.bucket, &crate::storage::media_prefix(&job.media_id))
                .await;
            Ok(Outcome::Gone)
        }
        Err(e) => Err(Stop::Retry(e.into())),
    }
}

/// The child names the files it wrote; only plain files directly in the job's output
/// directory are taken, so that not even a subverted decoder can have another file stored.
fn inside<'a>(out_dir: &Path, path: &'a Path) -> Result<&'a Path, Stop> {
    let plain_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if path.parent() != Some(out_dir) || !plain_file {
        return Err(Stop::Crashed(format!(
            "the transform reported an output outside its directory: {}",
            path.display()
        )));
    }
    Ok(path)
}
