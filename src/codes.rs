//! Every code a client can see, each written once here with its status and meaning: the
//! errors of the HTTP API ([`api`]), the answers of `GET /readyz` ([`ready`]) and the codes a
//! media's processing can fail with ([`media`]). Code elsewhere names these constants, never a
//! string, so a typo does not compile; the README's tables and `GET /openapi.json` are checked
//! against these tables by `tests/api/codes.rs`.

use axum::http::StatusCode;
pub use satchel_workers::Code;

/// A code an HTTP response carries in `{"error": {"code", "message"}}`, and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCode {
    pub code: &'static str,
    pub status: StatusCode,
    pub meaning: &'static str,
}

/// The tus checksum extension's status for a chunk that does not match its
/// `Upload-Checksum`.
pub const CHECKSUM_MISMATCH_STATUS: StatusCode = match StatusCode::from_u16(460) {
    Ok(status) => status,
    Err(_) => panic!("460 is a valid status"),
};

/// `NAME: "code", StatusCode::X, "meaning";` once each: the constants and `ALL`, in that order.
macro_rules! api_codes {
    ($($name:ident: $code:expr, $status:expr, $meaning:literal;)+) => {
        $(pub const $name: ApiCode = ApiCode {
            code: $code,
            status: $status,
            meaning: $meaning,
        };)+
        pub const ALL: &[ApiCode] = &[$($name),+];
    };
}

/// Errors of the HTTP API; [`crate::error::ApiError`] maps each of its variants to one.
pub mod api {
    use super::{ApiCode, StatusCode};

    api_codes! {
        UNAUTHORIZED: "unauthorized", StatusCode::UNAUTHORIZED, "Missing or wrong bearer token on /v1.";
        INVALID_ID: "invalid_id", StatusCode::BAD_REQUEST, "A chat or user id that is not 1-128 characters of A-Z a-z 0-9 . _ : @ -.";
        BAD_REQUEST: "bad_request", StatusCode::BAD_REQUEST, "Malformed query, JSON, multipart or header; an upload cut short.";
        EMPTY_FILE: "empty_file", StatusCode::BAD_REQUEST, "Upload with an empty body.";
        DIGEST_MISMATCH: "digest_mismatch", StatusCode::BAD_REQUEST, "The body does not match its Content-Digest; nothing stored.";
        UNKNOWN_VARIANT: "unknown_variant", StatusCode::BAD_REQUEST, "A variant name that this kind of media never has.";
        NOT_A_MEMBER: "not_a_member", StatusCode::FORBIDDEN, "The uploader, or the user a link is for, is not a current member of the chat.";
        FORBIDDEN: "forbidden", StatusCode::FORBIDDEN, "Download with a bad or expired signature, or by a user no longer a member.";
        NOT_FOUND: "not_found", StatusCode::NOT_FOUND, "Unknown media id, unknown route, or a variant the media does not have.";
        METHOD_NOT_ALLOWED: "method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, "Known route, wrong method.";
        UPLOAD_TIMEOUT: "upload_timeout", StatusCode::REQUEST_TIMEOUT, "The upload body sent nothing for upload_idle_timeout_seconds (30 s by default), or less than upload_min_bytes_per_second over a window of upload_rate_window_seconds (1024 B/s over 30 s by default); nothing stored.";
        VARIANT_NOT_READY: "variant_not_ready", StatusCode::CONFLICT, "A variant that does not exist (yet): still processing, or processing failed.";
        IDEMPOTENCY_CONFLICT: "idempotency_conflict", StatusCode::CONFLICT, "An Idempotency-Key already used in the chat by another uploader or for other bytes; nothing stored.";
        GONE: "gone", StatusCode::GONE, "The media was erased (unsent, chat erased, TTL ran out); or the chat of an upload in flight was.";
        TOO_LARGE: "too_large", StatusCode::PAYLOAD_TOO_LARGE, "Over max_upload_bytes; nothing stored.";
        QUOTA_EXCEEDED: "quota_exceeded", StatusCode::PAYLOAD_TOO_LARGE, "The upload would take the chat (max_chat_bytes) or the uploader (max_user_bytes) over its storage quota; nothing stored.";
        RANGE_NOT_SATISFIABLE: "range_not_satisfiable", StatusCode::RANGE_NOT_SATISFIABLE, "A Range outside the file.";
        RATE_LIMITED: "rate_limited", StatusCode::TOO_MANY_REQUESTS, "A rate limit or an in-flight cap was hit; Retry-After, RateLimit-Policy and RateLimit say which and when.";
        INTERNAL_ERROR: "internal_error", StatusCode::INTERNAL_SERVER_ERROR, "A bug or catalog failure; details are in the log only.";
        BUCKET_TAKEN: "bucket_taken", StatusCode::INTERNAL_SERVER_ERROR, "The chat's bucket name belongs to another account of the object store; nothing stored. An operator must act (the log names the bucket).";
        STORAGE_UNAVAILABLE: "storage_unavailable", StatusCode::SERVICE_UNAVAILABLE, "The store did not answer; retry later.";
        INVALID_TICKET: "invalid_ticket", StatusCode::NOT_FOUND, "An upload ticket that is malformed, tampered with, expired, or for an upload that was terminated (or refused as it completed).";
        OFFSET_MISMATCH: "offset_mismatch", StatusCode::CONFLICT, "A resumable-upload PATCH whose Upload-Offset is not the server's; HEAD tells the right one.";
        UPLOAD_BUSY: "upload_busy", StatusCode::CONFLICT, "A resumable-upload request while another PATCH of the same upload is still running.";
        UPLOAD_EXISTS: "upload_exists", StatusCode::CONFLICT, "A second creation POST with an upload ticket whose upload exists: a ticket is for one upload.";
        UPLOAD_EXPIRED: "upload_expired", StatusCode::GONE, "A resumable upload that was not finished before Upload-Expires; its bytes are gone.";
        CHECKSUM_MISMATCH: "checksum_mismatch", super::CHECKSUM_MISMATCH_STATUS, "A resumable-upload chunk that does not match its Upload-Checksum; the chunk is discarded, the offset unchanged.";
        UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE, "A resumable-upload PATCH without Content-Type: application/offset+octet-stream.";
        TUS_VERSION: "unsupported_tus_version", StatusCode::PRECONDITION_FAILED, "A resumable-upload request whose Tus-Resumable is not 1.0.0.";
    }
}

/// What `GET /readyz` answers with `503`: the backend that does not answer.
pub mod ready {
    use super::{ApiCode, StatusCode};

    api_codes! {
        STORAGE_UNAVAILABLE: super::api::STORAGE_UNAVAILABLE.code, StatusCode::SERVICE_UNAVAILABLE, "The object store does not answer.";
        CATALOG_UNAVAILABLE: "catalog_unavailable", StatusCode::SERVICE_UNAVAILABLE, "The catalog (SQLite or PostgreSQL) does not answer.";
        QUEUE_UNAVAILABLE: "queue_unavailable", StatusCode::SERVICE_UNAVAILABLE, "The job queue (embedded or RabbitMQ) does not answer.";
    }
}

/// Codes a failed media carries in `error.code`: the workers' verdicts on the input
/// ([`satchel_workers::CODES`], except the retryable `io_error`, which makes the job run
/// again) and the job runner's own ([`SERVICE`]).
pub mod media {
    use super::Code;
    use satchel_workers::WorkerError;

    pub const TIMED_OUT: Code = WorkerError::TIMED_OUT;
    pub const UNSUPPORTED_CODEC: Code = WorkerError::UNSUPPORTED_CODEC;

    pub const WORKER_CRASHED: Code = Code {
        code: "worker_crashed",
        meaning: "The transform's process died on this input on each of job_max_attempts runs (embedded queue).",
    };
    pub const DEAD_LETTERED: Code = Code {
        code: "dead_lettered",
        meaning:
            "With RabbitMQ: the job's transform died on more deliveries than the delivery limit.",
    };
    pub const ORIGINAL_MISSING: Code = Code {
        code: "original_missing",
        meaning: "The original is no longer in storage.",
    };
    pub const RETRIES_EXHAUSTED: Code = Code {
        code: "retries_exhausted",
        meaning: "Retryable trouble (storage, local I/O) persisted for job_max_attempts runs.",
    };
    pub const TOO_MANY_ATTEMPTS: Code = Code {
        code: "too_many_attempts",
        meaning: "Embedded queue: the job was handed out more than job_max_attempts times.",
    };

    /// The job runner's codes, besides the workers'.
    pub const SERVICE: &[Code] = &[
        WORKER_CRASHED,
        DEAD_LETTERED,
        ORIGINAL_MISSING,
        RETRIES_EXHAUSTED,
        TOO_MANY_ATTEMPTS,
    ];

    /// Every code a media can fail with.
    pub fn all() -> impl Iterator<Item = &'static Code> {
        satchel_workers::CODES
            .iter()
            .filter(|c| **c != WorkerError::IO_ERROR)
            .chain(SERVICE)
    }
}

/// The codes an error body of the HTTP API can carry: [`api::ALL`], then those of
/// [`ready::ALL`] that are not API codes too.
pub fn error_body_codes() -> Vec<ApiCode> {
    let mut codes: Vec<ApiCode> = api::ALL.to_vec();
    for c in ready::ALL {
        if !codes.iter().any(|known| known.code == c.code) {
            codes.push(*c);
        }
    }
    codes
}
