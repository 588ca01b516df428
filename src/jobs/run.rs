//! One job, start to finish: fetch the original, run the worker, store the variants, record
//! the outcome. Jobs are idempotent: a rerun writes the same keys and the same rows.

use crate::catalog::{Job, JobResult};
use crate::domain::{MediaError, MediaMetadata, MediaPlaceholder, VariantInfo};
use crate::state::AppState;
use crate::storage::{original_key, variant_key, StorageError};
use satchel_workers::{Processed, WorkerError};
use std::collections::BTreeMap;
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
    Fail(MediaError),
}

fn fail(code: &str, message: impl Into<String>) -> Stop {
    Stop::Fail(MediaError {
        code: code.into(),
        message: message.into(),
    })
}

impl From<StorageError> for Stop {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => fail("original_missing", "the original is not in storage"),
            e => Stop::Retry(e.into()),
        }
    }
}

/// Runs `job` and records its outcome; never panics into the caller's task on a worker panic.
#[tracing::instrument(skip_all, fields(media_id = %job.media_id, kind = job.kind.as_str(), attempt = job.attempt))]
pub async fn run_job(state: &AppState, job: &Job) -> Outcome {
    let started = Instant::now();
    let max_attempts = state.config.job_max_attempts;
    let result = if job.attempt > max_attempts {
        Err(fail(
            "too_many_attempts",
            format!("gave up after {max_attempts} attempts"),
        ))
    } else {
        attempt(state, job).await
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(Stop::Retry(e)) if job.attempt < max_attempts => {
            let delay = Duration::from_secs(2u64.pow(job.attempt.min(8)));
            tracing::warn!(error = ?e, ?delay, "job will be retried");
            match state.queue.retry(job, delay).await {
                Ok(()) => Outcome::Retried,
                Err(e) => {
                    // The lease runs out and the job comes back anyway.
                    tracing::error!(error = %e, "cannot requeue; the lease will expire instead");
                    Outcome::Retried
                }
            }
        }
        Err(Stop::Retry(e)) => {
            record_failure(
                state,
                job,
                MediaError {
                    code: "retries_exhausted".into(),
                    message: format!("gave up after {max_attempts} attempts: {e}"),
                },
            )
            .await
        }
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

async fn record_failure(state: &AppState, job: &Job, error: MediaError) -> Outcome {
    let code = error.code.clone();
    tracing::warn!(code, message = %error.message, "media failed");
    match state
        .catalog
        .finish_job(&job.media_id, JobResult::Failed(error))
        .await
    {
        Ok(Some(media)) => {
            state.events.status_changed(&media);
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
                    code: "gone".into(),
                    message: String::new(),
                }),
            )
            .await;
        return Ok(Outcome::Gone);
    };
    let Some(pipeline) = job.kind.pipeline() else {
        return Err(fail("unsupported_codec", "files are never processed"));
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

    let presets = state.presets.clone();
    let out = out_dir.clone();
    let work = tokio::task::spawn_blocking(move || {
        satchel_workers::process(pipeline, &input, &presets, &out)
    });
    let processed = match tokio::time::timeout(state.config.job_timeout, work).await {
        Err(_) => return Err(fail("timed_out", "the job ran over its time budget")),
        Ok(Err(join)) => {
            tracing::error!(error = %join, "worker panicked");
            return Err(fail("worker_crashed", "the worker crashed on this input"));
        }
        Ok(Ok(Err(e))) => return Err(worker_error(e)),
        Ok(Ok(Ok(processed))) => processed,
    };

    let mut variants = BTreeMap::new();
    for v in &processed.variants {
        state
            .store
            .put_file(
                &stored.bucket,
                &variant_key(&job.media_id, &v.name),
                &v.path,
            )
            .await?;
        variants.insert(
            v.name.clone(),
            VariantInfo {
                mime: v.mime.clone(),
                size: v.size,
                width: v.width,
                height: v.height,
                duration_ms: v.duration_ms,
            },
        );
    }
    let result = ready(processed, variants);
    match state.catalog.finish_job(&job.media_id, result).await {
        Ok(Some(media)) => {
            state.events.status_changed(&media);
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

fn worker_error(e: WorkerError) -> Stop {
    if e.is_retryable() {
        Stop::Retry(e.into())
    } else {
        fail(e.code(), e.to_string())
    }
}

fn ready(p: Processed, variants: BTreeMap<String, VariantInfo>) -> JobResult {
    JobResult::Ready {
        metadata: MediaMetadata {
            width: p.metadata.width,
            height: p.metadata.height,
            duration_ms: p.metadata.duration_ms,
            waveform: p.metadata.waveform,
        },
        placeholder: p.placeholder.map(|p| MediaPlaceholder {
            blurhash: p.blurhash,
            thumbhash: p.thumbhash,
        }),
        variants,
    }
}
