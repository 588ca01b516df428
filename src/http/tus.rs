//! Resumable uploads: `POST /v1/chats/{chat}/upload-tickets` (bearer) issues a ticket, and
//! `/v1/tus/{ticket}` speaks tus 1.0.0 (`creation`, `creation-with-upload`, `expiration`,
//! `checksum`, `termination`) to the client that holds it, with no service token. The ticket
//! names one upload, so the upload's URL (`Location`) is the ticket's URL itself.
//!
//! The ticket, not a cookie, is the credential: every answer of the tus route is readable
//! from any origin ([`headers`]), and its preflight is answered ([`options`]).

use super::body::Guarded;
use super::extract::{Json, Path};
use crate::domain::{ChatId, UserId};
use crate::error::{ApiError, ErrorBody};
use crate::links::Ticket;
use crate::state::AppState;
use crate::usecase::tus::{self as usecase, Checksum, Chunk, TUS_VERSION};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Response headers a web client may read on the tus route.
const EXPOSED: &str = "Location, Upload-Offset, Upload-Length, Upload-Expires, Tus-Resumable, \
    Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Satchel-Media-Id, \
    Retry-After, RateLimit, RateLimit-Policy";
/// `Upload-Metadata` longer than this is refused: it only carries a filename here.
const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Request headers a web client may send (tus-js-client's, and Uppy's).
const ALLOWED: &str = "Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, \
    Upload-Checksum, Upload-Defer-Length, Upload-Concat, Content-Type, X-HTTP-Method-Override, \
    X-Requested-With";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

#[derive(Deserialize, ToSchema)]
pub struct TicketRequest {
    /// The uploader; must be a current member of the chat.
    user: String,
    /// The largest upload the ticket allows (at most, and by default, `max_upload_bytes`).
    max_bytes: Option<u64>,
    /// How long the ticket can create its upload (default 3600, at most 7 days).
    ttl_seconds: Option<u64>,
    /// The media's own `ttl_seconds` (secret chats).
    ttl_seconds_media: Option<u64>,
    /// Wins over the client's `Upload-Metadata` filename.
    filename: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TicketResponse {
    /// Where the client speaks tus; no bearer token needed.
    upload_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

/// Issue an upload ticket: one resumable upload by one member, straight from the client.
#[utoipa::path(post, path = "/v1/chats/{chat}/upload-tickets", tag = "uploads",
    params(("chat" = String, Path)),
    request_body = TicketRequest,
    responses((status = 200, body = TicketResponse),
        (status = 400, description = "invalid_id, bad_request", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 429, description = "rate_limited (rate_upload_tickets_per_user)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn issue(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Json(body): Json<TicketRequest>,
) -> Result<axum::Json<TicketResponse>, ApiError> {
    let issued = usecase::issue_ticket(
        &state,
        usecase::TicketRequest {
            chat: ChatId::parse(&chat)?,
            user: UserId::parse(&body.user)?,
            max_bytes: body.max_bytes,
            ttl_seconds: body.ttl_seconds,
            media_ttl_seconds: body.ttl_seconds_media,
            filename: body.filename,
        },
    )
    .await?;
    Ok(axum::Json(TicketResponse {
        upload_url: issued.upload_url,
        expires_at: issued.expires_at,
    }))
}

/// Every answer of the tus route, errors included: `Tus-Resumable`, and readable from any
/// origin (without credentials, which `*` never allows).
pub async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    super::files::any_origin(h, EXPOSED);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What the server supports, and the CORS preflight of every tus request.
#[utoipa::path(options, path = "/v1/tus/{ticket}", tag = "uploads",
    params(("ticket" = String, Path)),
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, \
        Tus-Checksum-Algorithm; CORS preflight for any origin")))]
pub async fn options(State(state): State<AppState>) -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            ("tus-version", TUS_VERSION.to_owned()),
            ("tus-extension", usecase::TUS_EXTENSIONS.to_owned()),
            ("tus-max-size", state.config.max_upload_bytes.to_string()),
            ("tus-checksum-algorithm", usecase::TUS_CHECKSUMS.to_owned()),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS.as_str(),
                "POST, HEAD, PATCH, DELETE, OPTIONS".to_owned(),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS.as_str(),
                ALLOWED.to_owned(),
            ),
            (header::ACCESS_CONTROL_MAX_AGE.as_str(), "86400".to_owned()),
        ],
    )
        .into_response()
}

/// The request's ticket, once it names the protocol version it speaks (every tus request
/// but `OPTIONS` does).
fn ticket(state: &AppState, raw: &str, headers: &HeaderMap) -> Result<Ticket, ApiError> {
    match headers.get("tus-resumable").map(HeaderValue::as_bytes) {
        Some(b"1.0.0") => usecase::open_ticket(state, raw),
        _ => Err(ApiError::TusVersion),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Two of them: a proxy that reads the other one would disagree about the upload.
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!("{name} more than once")));
    }
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("{name} must be a non-negative integer")))
}

/// `Upload-Metadata`'s `filename` (or `name`, as Uppy sends it), base64-decoded.
fn metadata_filename(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("upload-metadata") else {
        return Ok(None);
    };
    let malformed = || ApiError::BadRequest("malformed Upload-Metadata".into());
    if value.len() > MAX_METADATA_BYTES {
        return Err(ApiError::BadRequest(format!(
            "Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes"
        )));
    }
    let value = value.to_str().map_err(|_| malformed())?;
    let mut found = None;
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| malformed())?;
        let take = match key {
            "filename" => true,
            "name" => found.is_none(),
            _ => false,
        };
        if take {
            if decoded.len() > usecase::MAX_FILENAME_BYTES {
                return Err(ApiError::BadRequest(format!(
                    "the filename is longer than {} bytes",
                    usecase::MAX_FILENAME_BYTES
                )));
            }
            found = Some(String::from_utf8(decoded).map_err(|_| malformed())?);
        }
    }
    Ok(found)
}

/// `Upload-Checksum: <algorithm> <base64>`.
fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let malformed = || ApiError::BadRequest("malformed Upload-Checksum".into());
    let value = value.to_str().map_err(|_| malformed())?;
    let (algorithm, encoded) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    match (algorithm, digest.len()) {
        ("sha1", 20) => Ok(Some(Checksum::Sha1(digest))),
        ("sha256", 32) => Ok(Some(Checksum::Sha256(digest))),
        ("sha1" | "sha256", _) => Err(malformed()),
        _ => Err(ApiError::BadRequest(format!(
            "Upload-Checksum algorithm must be one of {}",
            usecase::TUS_CHECKSUMS
        ))),
    }
}

fn http_date(unix: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    httpdate::fmt_http_date(at)
}

fn insert(response: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, v);
    }
}

/// The headers that say where an upload is: its offset and length, and its media once it is
/// one (else when it expires).
fn describe(response: &mut Response, upload: &crate::catalog::TusUpload) {
    insert(response, "upload-offset", upload.offset.to_string());
    insert(response, "upload-length", upload.length.to_string());
    match &upload.media_id {
        Some(id) => insert(response, "satchel-media-id", id.to_string()),
        None => insert(response, "upload-expires", http_date(upload.expires_at)),
    }
}

/// A chunk's body as it arrives: the idle timeout and the minimum rate of any upload.
fn guarded(state: &AppState, request: Request) -> Guarded<axum::body::BodyDataStream> {
    let config = &state.config;
    Guarded::new(
        request.into_body().into_data_stream(),
        config.max_upload_bytes,
        config.max_upload_bytes,
        config.upload_idle_timeout,
    )
    .with_min_rate(config.limits.upload_min_rate)
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
        })
}

/// Creation (`POST`), with the first bytes if the body has them (`creation-with-upload`).
#[utoipa::path(post, path = "/v1/tus/{ticket}", tag = "uploads",
    params(("ticket" = String, Path),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header),
        ("Upload-Metadata" = Option<String>, Header, description = "`filename <base64>`")),
    responses(
        (status = 201, description = "created: `Location`, `Upload-Expires`, `Upload-Offset`; \
            `Satchel-Media-Id` if the body was the whole file"),
        (status = 400, description = "bad_request, empty_file", body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 404, description = "invalid_ticket", body = ErrorBody),
        (status = 409, description = "upload_exists", body = ErrorBody),
        (status = 412, description = "unsupported_tus_version", body = ErrorBody),
        (status = 413, description = "too_large, quota_exceeded", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    // tus: a client behind a proxy that allows only GET and POST sends the method here.
    let overridden = request
        .headers()
        .get("x-http-method-override")
        .map(|m| m.as_bytes().to_ascii_uppercase());
    match overridden.as_deref() {
        None | Some(b"POST") => {}
        Some(b"PATCH") => return patch(State(state), Path(raw), request).await,
        Some(b"HEAD") => return head(State(state), Path(raw), request.headers().clone()).await,
        Some(b"DELETE") => {
            let headers = request.headers().clone();
            return terminate(State(state), Path(raw), headers)
                .await
                .map(IntoResponse::into_response);
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "X-HTTP-Method-Override must be PATCH, HEAD or DELETE".into(),
            ))
        }
    }
    let headers = request.headers();
    let ticket = ticket(&state, &raw, headers)?;
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::BadRequest(
            "Upload-Defer-Length is not supported: send Upload-Length".into(),
        ));
    }
    let length = number(headers, "upload-length")?
        .ok_or_else(|| ApiError::BadRequest("Upload-Length is required".into()))?;
    let filename = metadata_filename(headers)?;
    let with_body = is_offset_stream(headers);
    let declared = number(headers, "content-length")?;
    // Every header is read before the upload exists: a malformed one creates nothing.
    let checksum = checksum(headers)?;
    let mut upload = usecase::create(&state, &ticket, length, filename).await?;
    let location = format!("{}/v1/tus/{raw}", state.public_url);
    if with_body && declared != Some(0) {
        let chunk = Chunk {
            offset: 0,
            declared,
            checksum,
        };
        let body = guarded(&state, request);
        match usecase::append(&state, &ticket, chunk, body).await {
            Ok(appended) => upload = appended,
            // The upload exists; the client resumes it from the offset HEAD gives.
            Err(e) if resumable(&e) => {
                if let Some(now) = state.catalog.tus_upload(&ticket.id).await? {
                    upload = now;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut response = StatusCode::CREATED.into_response();
    insert(&mut response, "location", location);
    describe(&mut response, &upload);
    Ok(response)
}

/// Whether a chunk's failure leaves an upload the client can go on with.
fn resumable(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::ChecksumMismatch
            | ApiError::BadRequest(_)
            | ApiError::UploadTimeout(_)
            | ApiError::UploadTooSlow { .. }
            | ApiError::UploadBusy
    )
}

/// Where the upload is: `Upload-Offset`, `Upload-Length`, `Upload-Expires`, and once it is a
/// media, `Satchel-Media-Id`.
#[utoipa::path(head, path = "/v1/tus/{ticket}", tag = "uploads",
    params(("ticket" = String, Path), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses(
        (status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires`; \
            `Satchel-Media-Id` once finished (until the ticket expires)"),
        (status = 404, description = "invalid_ticket"),
        (status = 410, description = "upload_expired, gone (the chat was erased)")))]
pub async fn head(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ticket = ticket(&state, &raw, &headers)?;
    let upload = usecase::status(&state, &ticket).await?;
    let mut response = StatusCode::OK.into_response();
    describe(&mut response, &upload);
    Ok(response)
}

/// Append a chunk at `Upload-Offset`.
#[utoipa::path(patch, path = "/v1/tus/{ticket}", tag = "uploads",
    params(("ticket" = String, Path),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Offset" = u64, Header),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this chunk")),
    request_body(content = String, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "appended: the new `Upload-Offset`; `Satchel-Media-Id` on \
            the last byte"),
        (status = 400, description = "bad_request (past Upload-Length: nothing appended)", body = ErrorBody),
        (status = 403, description = "not_a_member (the upload ends)", body = ErrorBody),
        (status = 404, description = "invalid_ticket", body = ErrorBody),
        (status = 408, description = "upload_timeout", body = ErrorBody),
        (status = 409, description = "offset_mismatch, upload_busy", body = ErrorBody),
        (status = 410, description = "upload_expired, gone", body = ErrorBody),
        (status = 413, description = "quota_exceeded", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 460, description = "checksum_mismatch: the chunk is discarded", body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let ticket = ticket(&state, &raw, headers)?;
    if !is_offset_stream(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let chunk = Chunk {
        offset: number(headers, "upload-offset")?
            .ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))?,
        declared: number(headers, "content-length")?,
        checksum: checksum(headers)?,
    };
    let body = guarded(&state, request);
    let upload = usecase::append(&state, &ticket, chunk, body).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    describe(&mut response, &upload);
    Ok(response)
}

/// Terminate the upload: its bytes go, its ticket is spent.
#[utoipa::path(delete, path = "/v1/tus/{ticket}", tag = "uploads",
    params(("ticket" = String, Path), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses((status = 204, description = "terminated (a finished upload stays the chat's media)"),
        (status = 404, description = "invalid_ticket", body = ErrorBody),
        (status = 409, description = "upload_busy", body = ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let ticket = ticket(&state, &raw, &headers)?;
    usecase::terminate(&state, &ticket).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_checksums_parse_as_tus_writes_them() {
        let mut h = HeaderMap::new();
        h.insert(
            "upload-metadata",
            "filetype aW1hZ2UvanBlZw==,name b3RoZXI=,filename cGhvdG8uanBn,is_confidential"
                .parse()
                .unwrap(),
        );
        assert_eq!(metadata_filename(&h).unwrap().as_deref(), Some("photo.jpg"));
        h.insert("upload-metadata", "filename !!!".parse().unwrap());
        assert!(metadata_filename(&h).is_err());
        h.insert(
            "upload-checksum",
            "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=".parse().unwrap(),
        );
        assert!(matches!(checksum(&h).unwrap(), Some(Checksum::Sha1(d)) if d.len() == 20));
        h.insert("upload-checksum", "md5 AAAA".parse().unwrap());
        assert!(checksum(&h).is_err());
        h.insert("upload-offset", "-1".parse().unwrap());
        assert!(number(&h, "upload-offset").is_err());
    }
}
