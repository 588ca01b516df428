//! Sorting the SDK's failures into what a caller can act on.

use crate::storage::{Result, StorageError};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

pub(super) fn other(e: impl Into<anyhow::Error>) -> StorageError {
    StorageError::Other(e.into())
}

/// Sorts an SDK failure into what a caller can act on: the store being away (503, retry
/// later), the object being absent, or anything else.
pub(super) fn classify<E>(e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return StorageError::Unavailable(anyhow::Error::new(e))
        }
        _ => {}
    }
    match (code.as_deref(), status) {
        (Some("NoSuchKey" | "NoSuchBucket" | "NotFound" | "NoSuchUpload"), _) | (_, Some(404)) => {
            StorageError::NotFound
        }
        (_, Some(500..=599)) if code.as_deref() != Some("NotImplemented") => {
            StorageError::Unavailable(anyhow::Error::new(e))
        }
        _ => StorageError::Other(anyhow::Error::new(e)),
    }
}

pub(super) fn ignore_not_found(r: Result<()>) -> Result<()> {
    match r {
        Err(StorageError::NotFound) => Ok(()),
        other => other,
    }
}

pub(super) fn tolerate_not_implemented<E>(
    r: std::result::Result<(), SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    bucket: &str,
    what: &str,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("NotImplemented") || e.code() == Some("NotImplementedError") => {
            tracing::info!(
                bucket,
                "this S3 server does not implement the {what}; left as is"
            );
            Ok(())
        }
        Err(e) => Err(classify(e)),
    }
}
