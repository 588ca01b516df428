//! `POST /v1/chats/{chat}/media`: parses the request for the upload use case
//! ([`crate::usecase::upload`]), which streams the body into the chat's bucket and records it.

use super::body::Guarded;
use super::extract::{Path, Query};
use super::multipart::{self, Form, FormError};
use crate::domain::{ChatId, Media, UserId};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::usecase::upload::{Begun, Receiving, Stored, Upload};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use utoipa::IntoParams;

/// What a multipart body may carry besides its file (delimiters, headers, small parts): the
/// whole body may be this much over `max_upload_bytes`, the file itself not a byte.
pub const MULTIPART_FRAMING: u64 = 64 * 1024;

#[derive(Deserialize, IntoParams)]
pub struct UploadParams {
    /// The uploader; must be a current member of the chat.
    user: String,
    /// A hint only: the type is sniffed from the bytes.
    filename: Option<String>,
    /// Secret chats: erase the media and all its variants after this many seconds.
    ttl_seconds: Option<u64>,
}

/// Upload a file (raw body or multipart part `file`).
#[utoipa::path(post, path = "/v1/chats/{chat}/media", tag = "media",
    params(("chat" = String, Path), UploadParams,
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530, e.g. `sha-256=:<base64>:`"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key in the same chat returns the first upload")),
    request_body(description = "The file's bytes, streamed; or `multipart/form-data` with one file part named `file`.",
        content((String = "application/octet-stream"), (super::openapi::UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "stored; processing follows", body = Media),
        (status = 200, description = "an earlier upload with this Idempotency-Key", body = Media),
        (status = 400, description = "invalid_id, empty_file, digest_mismatch, bad_request", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 408, description = "upload_timeout", body = ErrorBody),
        (status = 413, description = "too_large, quota_exceeded", body = ErrorBody),
        (status = 429, description = "rate_limited: a rate limit or an in-flight cap", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(chat_id = %chat))]
pub async fn upload(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Query(params): Query<UploadParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = match content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        false => None,
        true => Some(multipart::boundary(content_type).ok_or_else(|| {
            ApiError::BadRequest("multipart/form-data needs a boundary of 1-70 characters".into())
        })?),
    };
    let framing = if boundary.is_some() {
        MULTIPART_FRAMING
    } else {
        0
    };
    let upload = Upload {
        chat: ChatId::parse(&chat)?,
        user: UserId::parse(&params.user)?,
        filename: params.filename,
        ttl_seconds: params.ttl_seconds,
        idempotency_key: idempotency_key(headers)?,
        digest: content_digest(headers)?,
        declared_size: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        framing,
        staged: (0, 0),
    };
    // A client waiting for `100 Continue` has sent nothing: an early refusal reads nothing.
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let config = &state.config;
    let mut body = Guarded::new(
        request.into_body().into_data_stream(),
        config.max_upload_bytes.saturating_add(framing),
        config.max_upload_bytes,
        config.upload_idle_timeout,
    )
    .with_min_rate(config.limits.upload_min_rate);
    let receiving = match upload.begin(&state).await {
        Ok(Begun::Existing(media)) => {
            return Ok((StatusCode::OK, axum::Json(media)).into_response())
        }
        Ok(Begun::Receiving(receiving)) => receiving,
        Err(refused) => {
            // Refused before a byte was read (not a member, too large, over quota, rate
            // limited): the client may be sending still, and should read this answer, not a
            // reset. One waiting for `100 Continue` has sent nothing.
            if !expects_continue {
                body.linger().await;
            }
            return Err(refused);
        }
    };
    let stored = match boundary {
        None => receiving.receive(&state, &mut body, None).await,
        Some(boundary) => {
            let form = Form::new(&mut body, &boundary, config.multipart);
            receive_file_part(&state, form, receiving).await
        }
    };
    if lingers(&stored) {
        body.linger().await;
    }
    Ok(match stored? {
        Stored::New(media) => (StatusCode::CREATED, axum::Json(media)).into_response(),
        Stored::Existing(media) => (StatusCode::OK, axum::Json(media)).into_response(),
    })
}

/// Streams the multipart part named `file`, with the filename it carries; the parts before
/// it are skipped, each within its limit.
async fn receive_file_part<S>(
    state: &AppState,
    mut form: Form<'_, S>,
    receiving: Receiving,
) -> Result<Stored, ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin,
{
    let name = loop {
        match form.next_part().await {
            Ok(Some(part)) if part.name.as_deref() == Some("file") => break part.filename,
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(ApiError::BadRequest(
                    "no multipart part named \"file\"".into(),
                ))
            }
            Err(FormError::Body(e)) => return Err(e.into()),
            Err(FormError::Malformed(why)) => return Err(ApiError::BadRequest(why)),
        }
    };
    let content = futures_util::stream::try_unfold(&mut form, |form| async move {
        Ok(form.content().await?.map(|piece| (piece, form)))
    });
    receiving.receive(state, content, name).await
}

/// Whether to read what the client still sends before answering `stored`: a refused body may
/// be mid-flight, and a client that is still writing would see a reset instead of the answer.
/// Not after an idle timeout or a cut for the minimum rate: that client is not sending, or
/// too slowly to deserve more time.
fn lingers(stored: &Result<Stored, ApiError>) -> bool {
    matches!(
        stored,
        Err(e) if !matches!(e, ApiError::UploadTimeout(_) | ApiError::UploadTooSlow { .. })
    )
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(|k| k.trim().trim_matches('"'))
        .filter(|k| (1..=255).contains(&k.len()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1-255 visible ASCII characters".into())
        })?;
    Ok(Some(key.to_owned()))
}

/// The `sha-256` member of an RFC 9530 `Content-Digest` header, if there is one. Other
/// algorithms are ignored, as the RFC allows.
fn content_digest(headers: &HeaderMap) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(value) = headers.get("content-digest") else {
        return Ok(None);
    };
    let malformed = || ApiError::BadRequest("malformed Content-Digest".into());
    let value = value.to_str().map_err(|_| malformed())?;
    for member in value.split(',') {
        let Some((algorithm, encoded)) = member.trim().split_once('=') else {
            return Err(malformed());
        };
        if !algorithm.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let encoded = encoded
            .trim()
            .strip_prefix(':')
            .and_then(|e| e.strip_suffix(':'))
            .ok_or_else(malformed)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| malformed())?;
        return bytes.try_into().map(Some).map_err(|_| malformed());
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_picks_sha256_among_others() {
        let mut h = HeaderMap::new();
        let digest = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        h.insert(
            "content-digest",
            format!("sha-512=:AAAA:, sha-256=:{b64}:").parse().unwrap(),
        );
        assert_eq!(content_digest(&h).unwrap(), Some(digest));
        h.insert("content-digest", "sha-256=nope".parse().unwrap());
        assert!(content_digest(&h).is_err());
    }
}
