//! `POST /v1/chats/{chat}/media`: stream an upload into the chat's bucket and record it.

use super::extract::{Path, Query};
use super::ingest::{ingest, IngestError, Ingested};
use crate::catalog::{Inserted, NewMedia};
use crate::domain::{sniff, ChatId, Kind, Media, MediaId, MediaMetadata, Status, UserId};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::storage::{media_prefix, original_key, PutSink};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use utoipa::IntoParams;

/// A body that sends nothing for this long is abandoned (slow-client defence).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Multipart framing around the file part; not counted against the file size limit.
const MULTIPART_SLACK: u64 = 64 * 1024;
/// Secret-chat TTLs longer than this are refused as a likely mistake.
const MAX_MEDIA_TTL: u64 = 366 * 24 * 3600;

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
        (status = 413, description = "too_large", body = ErrorBody),
        (status = 503, description = "storage_unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(chat_id = %chat))]
pub async fn upload(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Query(params): Query<UploadParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let chat = ChatId::parse(&chat)?;
    let user = UserId::parse(&params.user)?;
    let ttl = match params.ttl_seconds {
        Some(0) => {
            return Err(ApiError::BadRequest(
                "ttl_seconds must be at least 1".into(),
            ))
        }
        Some(t) if t > MAX_MEDIA_TTL => {
            return Err(ApiError::BadRequest(format!(
                "ttl_seconds must be at most {MAX_MEDIA_TTL}"
            )))
        }
        t => t,
    };
    let headers = request.headers();
    let idempotency_key = idempotency_key(headers)?;
    let digest = content_digest(headers)?;
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let limit = state.config.max_upload_bytes;
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());

    if !state.catalog.is_member(&chat, &user).await? {
        state.metrics.upload("unknown", "not_a_member");
        return Err(ApiError::NotAMember);
    }
    if let Some(key) = &idempotency_key {
        if let Some(media) = state.catalog.media_by_idempotency_key(&chat, key).await? {
            return Ok((StatusCode::OK, axum::Json(media)).into_response());
        }
    }
    if declared.is_some_and(|n| n > limit + if multipart { MULTIPART_SLACK } else { 0 }) {
        state.metrics.upload("unknown", "too_large");
        return Err(ApiError::TooLarge(limit));
    }

    let bucket = state
        .catalog
        .ensure_chat(&chat, &state.store.bucket_for(&chat))
        .await?;
    state.store.ensure_bucket(&bucket).await?;
    let id = MediaId::generate();
    let mut sink = state.store.begin_put(&bucket, &original_key(&id)).await?;
    let (ingested, part_name) = match multipart {
        false => (
            receive(request.into_body().into_data_stream(), sink.as_mut(), limit).await,
            None,
        ),
        true => receive_multipart(request, sink.as_mut(), limit).await?,
    };
    let ingested = ingested.map_err(|e| {
        state.metrics.upload("unknown", e.code());
        e.into_api(limit)
    })?;
    if ingested.size == 0 {
        return Err(ApiError::EmptyFile);
    }
    if digest.is_some_and(|d| d != ingested.sha256) {
        state.metrics.upload("unknown", "digest_mismatch");
        return Err(ApiError::DigestMismatch);
    }
    sink.finish().await?;

    let sniffed = sniff(&ingested.head);
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    let media = Media {
        id,
        chat_id: chat.clone(),
        uploader: user,
        filename: clean_filename(params.filename.or(part_name).as_deref()),
        kind: sniffed.kind,
        mime: sniffed.mime.to_owned(),
        size: ingested.size,
        sha256: hex::encode(ingested.sha256),
        created_at: now,
        expires_at: ttl.map(|t| now + Duration::from_secs(t)),
        status: match sniffed.kind {
            Kind::File => Status::Ready,
            _ => Status::Processing,
        },
        error: None,
        metadata: MediaMetadata::default(),
        placeholder: None,
        variants: BTreeMap::new(),
    };
    let inserted = state
        .catalog
        .insert_media(NewMedia {
            media: media.clone(),
            bucket: bucket.clone(),
            idempotency_key,
        })
        .await;
    match inserted {
        Ok(Inserted::New) => {
            state.queue.notify();
            state.metrics.upload(media.kind.as_str(), "accepted");
            state.metrics.upload_bytes.inc_by(media.size);
            tracing::info!(media_id = %media.id, kind = media.kind.as_str(), size = media.size, "upload stored");
            Ok((StatusCode::CREATED, axum::Json(media)).into_response())
        }
        Ok(Inserted::Existing(first)) => {
            // A concurrent request with the same key won: keep one copy.
            let _ = state.store.delete_prefix(&bucket, &media_prefix(&id)).await;
            Ok((StatusCode::OK, axum::Json(*first)).into_response())
        }
        Err(e) => {
            let _ = state.store.delete_prefix(&bucket, &media_prefix(&id)).await;
            Err(e.into())
        }
    }
}

impl IngestError {
    fn code(&self) -> &'static str {
        match self {
            IngestError::TooLarge => "too_large",
            IngestError::Body(_) => "client_gone",
            IngestError::Idle => "upload_timeout",
            IngestError::Storage(_) => "storage_error",
        }
    }

    fn into_api(self, limit: u64) -> ApiError {
        match self {
            IngestError::TooLarge => ApiError::TooLarge(limit),
            IngestError::Body(cause) => {
                ApiError::BadRequest(format!("the upload was cut short: {cause}"))
            }
            IngestError::Idle => ApiError::UploadTimeout(IDLE_TIMEOUT.as_secs()),
            IngestError::Storage(e) => e.into(),
        }
    }
}

async fn receive<S, E>(body: S, sink: &mut dyn PutSink, limit: u64) -> Result<Ingested, IngestError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    E: std::fmt::Display,
{
    ingest(body, sink, limit, IDLE_TIMEOUT).await
}

/// Streams the part named `file`; other parts are skipped unread by the parser.
async fn receive_multipart(
    request: Request,
    sink: &mut dyn PutSink,
    limit: u64,
) -> Result<(Result<Ingested, IngestError>, Option<String>), ApiError> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
            .ok_or_else(|| ApiError::BadRequest("no multipart part named \"file\"".into()))?;
        if field.name() == Some("file") {
            let name = field.file_name().map(str::to_owned);
            return Ok((receive(field, sink, limit).await, name));
        }
    }
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

/// The name a download will carry: no directories, no control characters, bounded length.
fn clean_filename(declared: Option<&str>) -> String {
    let base = declared
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let mut name: String = base.chars().filter(|c| !c.is_control()).collect();
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    match name.trim() {
        "" | "." | ".." => "file".into(),
        n => n.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_directories_and_control_characters() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("C:\\x\\a\nb.jpg")), "ab.jpg");
        assert_eq!(clean_filename(Some("..")), "file");
        assert_eq!(clean_filename(None), "file");
    }

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
