//! The one error type of the HTTP API: every failure a client can see has a stable `code`.
//! Internal causes are logged once, here, and never echoed to the client.

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
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("this media was erased")]
    Gone,
    #[error("the link is invalid, expired, or its user is no longer a member")]
    Forbidden,
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("the body stalled for longer than {0} seconds")]
    UploadTimeout(u64),
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
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; match on this, not on the message.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotAMember => "not_a_member",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Gone => "gone",
            ApiError::Forbidden => "forbidden",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UploadTimeout(_) => "upload_timeout",
            ApiError::EmptyFile => "empty_file",
            ApiError::DigestMismatch => "digest_mismatch",
            ApiError::UnknownVariant(_) => "unknown_variant",
            ApiError::VariantNotReady(_) => "variant_not_ready",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidId(_)
            | ApiError::BadRequest(_)
            | ApiError::EmptyFile
            | ApiError::DigestMismatch
            | ApiError::UnknownVariant(_) => StatusCode::BAD_REQUEST,
            ApiError::NotAMember | ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Gone => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UploadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::VariantNotReady(_) => StatusCode::CONFLICT,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
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
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) | ApiError::StorageUnavailable(cause) => {
                tracing::error!(code = self.code(), error = ?cause, "request failed");
            }
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
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
