//! The one error type of the HTTP API: every failure a client can see has a stable `code`.
//! Internal causes are logged once, here, and never echoed to the client.

use crate::codes::{api, ApiCode};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    InvalidId(#[from] crate::domain::InvalidId),
    #[error("{0}")]
    BadRequest(String),
    #[error("the uploader or user is not a member of this chat")]
    NotAMember,
    #[error("no such media")]
    NotFound,
    /// No route matches the path; the code is `not_found`, as for an unknown media.
    #[error("no such route")]
    NoRoute,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("this media was erased")]
    Gone,
    #[error("this Idempotency-Key was used in this chat by another uploader or for other bytes")]
    IdempotencyConflict,
    #[error("the link is invalid, expired, or its user is no longer a member")]
    Forbidden,
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("{}", quota_message(*.0))]
    QuotaExceeded(crate::catalog::QuotaScope),
    #[error("the body stalled for longer than {0} seconds")]
    UploadTimeout(u64),
    #[error(
        "the body arrived slower than {bytes_per_second} bytes per second over {window} seconds"
    )]
    UploadTooSlow { bytes_per_second: u64, window: u64 },
    #[error("the body is empty")]
    EmptyFile,
    #[error("the body does not match its Content-Digest")]
    DigestMismatch,
    #[error("unknown variant {0:?}")]
    UnknownVariant(String),
    #[error("variant {0:?} does not exist (yet)")]
    VariantNotReady(String),
    #[error("the requested range cannot be satisfied")]
    RangeNotSatisfiable { size: u64 },
    #[error("object storage is unavailable")]
    StorageUnavailable(#[source] anyhow::Error),
    /// The bucket name, for the log only.
    #[error(
        "this chat's bucket belongs to another account of the object store; an operator must act"
    )]
    BucketTaken(String),
    #[error("{0}")]
    RateLimited(#[from] crate::limits::Limited),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error(
        "this upload ticket is malformed, tampered with or expired, or its upload was terminated"
    )]
    InvalidTicket,
    #[error("Upload-Offset is not the upload's offset, {0}")]
    OffsetMismatch(u64),
    #[error("another request of this upload is still running")]
    UploadBusy,
    #[error("this ticket's upload exists already: a ticket is for one upload")]
    UploadExists,
    #[error("this upload was not finished before it expired; its bytes are gone")]
    UploadExpired,
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    #[error("a PATCH's Content-Type must be application/offset+octet-stream")]
    UnsupportedMediaType,
    #[error("this server speaks tus 1.0.0 only (Tus-Resumable: 1.0.0)")]
    TusVersion,
}

fn quota_message(scope: crate::catalog::QuotaScope) -> &'static str {
    match scope {
        crate::catalog::QuotaScope::Chat => {
            "the upload would take the chat over its storage quota (max_chat_bytes)"
        }
        crate::catalog::QuotaScope::User => {
            "the upload would take the uploader over their storage quota (max_user_bytes)"
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; match on this, not on the message.
    #[schema(schema_with = code_schema)]
    pub code: &'static str,
    pub message: String,
}

/// `ErrorDetail.code` in the OpenAPI document: a string, one of the registered codes.
fn code_schema() -> utoipa::openapi::Object {
    let codes = crate::codes::error_body_codes();
    let described: Vec<String> = codes
        .iter()
        .map(|c| format!("- `{}` ({}): {}", c.code, c.status.as_u16(), c.meaning))
        .collect();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(codes.iter().map(|c| c.code)))
        .description(Some(format!(
            "Stable, snake_case; match on this, not on the message.\n\n{}",
            described.join("\n")
        )))
        .build()
}

impl ApiError {
    /// This error's entry in the registry of API codes.
    pub fn registered(&self) -> ApiCode {
        match self {
            ApiError::Unauthorized => api::UNAUTHORIZED,
            ApiError::InvalidId(_) => api::INVALID_ID,
            ApiError::BadRequest(_) => api::BAD_REQUEST,
            ApiError::NotAMember => api::NOT_A_MEMBER,
            ApiError::NotFound | ApiError::NoRoute => api::NOT_FOUND,
            ApiError::MethodNotAllowed => api::METHOD_NOT_ALLOWED,
            ApiError::Gone => api::GONE,
            ApiError::IdempotencyConflict => api::IDEMPOTENCY_CONFLICT,
            ApiError::Forbidden => api::FORBIDDEN,
            ApiError::TooLarge(_) => api::TOO_LARGE,
            ApiError::QuotaExceeded(_) => api::QUOTA_EXCEEDED,
            ApiError::UploadTimeout(_) | ApiError::UploadTooSlow { .. } => api::UPLOAD_TIMEOUT,
            ApiError::EmptyFile => api::EMPTY_FILE,
            ApiError::DigestMismatch => api::DIGEST_MISMATCH,
            ApiError::UnknownVariant(_) => api::UNKNOWN_VARIANT,
            ApiError::VariantNotReady(_) => api::VARIANT_NOT_READY,
            ApiError::RangeNotSatisfiable { .. } => api::RANGE_NOT_SATISFIABLE,
            ApiError::StorageUnavailable(_) => api::STORAGE_UNAVAILABLE,
            ApiError::BucketTaken(_) => api::BUCKET_TAKEN,
            ApiError::RateLimited(_) => api::RATE_LIMITED,
            ApiError::Internal(_) => api::INTERNAL_ERROR,
            ApiError::InvalidTicket => api::INVALID_TICKET,
            ApiError::OffsetMismatch(_) => api::OFFSET_MISMATCH,
            ApiError::UploadBusy => api::UPLOAD_BUSY,
            ApiError::UploadExists => api::UPLOAD_EXISTS,
            ApiError::UploadExpired => api::UPLOAD_EXPIRED,
            ApiError::ChecksumMismatch => api::CHECKSUM_MISMATCH,
            ApiError::UnsupportedMediaType => api::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TusVersion => api::TUS_VERSION,
        }
    }

    pub fn code(&self) -> &'static str {
        self.registered().code
    }

    pub fn status(&self) -> StatusCode {
        self.registered().status
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        match e {
            crate::storage::StorageError::NotFound => ApiError::Gone,
            crate::storage::StorageError::Unavailable(cause) => ApiError::StorageUnavailable(cause),
            crate::storage::StorageError::BucketTaken(bucket) => ApiError::BucketTaken(bucket),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) | ApiError::StorageUnavailable(cause) => {
                tracing::error!(code = self.code(), error = %format_args!("{cause:#}"), "request failed");
            }
            ApiError::BucketTaken(bucket) => tracing::error!(
                code = self.code(),
                bucket = bucket.as_str(),
                "request failed: this chat's bucket exists and belongs to another account of \
                 the object store (BucketAlreadyExists); delete it there or grant it to \
                 satchel's key"
            ),
            _ => tracing::debug!(code = self.code(), "request refused: {self}"),
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable { size } = self {
            if let Ok(v) = format!("bytes */{size}").parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, v);
            }
        }
        if let ApiError::RateLimited(limited) = &self {
            let headers = response.headers_mut();
            for (name, value) in [
                ("retry-after", limited.retry_after_seconds().to_string()),
                ("ratelimit-policy", limited.policy_header()),
                ("ratelimit", limited.limit_header()),
            ] {
                if let Ok(v) = value.parse() {
                    headers.insert(name, v);
                }
            }
        }
        if let ApiError::TusVersion = self {
            response
                .headers_mut()
                .insert("tus-version", axum::http::HeaderValue::from_static("1.0.0"));
        }
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// An error and its causes, `: `-separated, each said once: a message that already ends with
/// its cause's (`"queue unavailable: {0}"`) does not repeat it. A TLS failure's reason (an
/// unknown issuer, an expired certificate) is the last cause.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}
