//! `GET /v1/files/{media}/{variant}`: signed downloads. The signature proves the link was
//! issued; the catalog proves the media still exists and the user is still a member.
//!
//! A signed link is a capability (no cookie, no credential), so its answers, errors
//! included, are readable from any origin ([`cors`]) and its preflight is answered
//! ([`preflight`]); the bearer-token endpoints answer no CORS at all.

use super::extract::{Path, Peer, Query};
use super::range::{self, Requested};
use crate::domain::disposition::{disposition, variant_filename};
use crate::domain::{MediaId, UserId};
use crate::error::{ApiError, ErrorBody};
use crate::links::Grant;
use crate::state::AppState;
use crate::storage::{original_key, variant_key};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_util::io::ReaderStream;
use utoipa::IntoParams;

/// Response headers a web client may read on a download.
const EXPOSED: &str = "Content-Range, Content-Length, Content-Disposition, ETag, Accept-Ranges";

/// Every answer of the download route, errors included: any origin may read it (without
/// credentials, which `*` never allows) and embed it (`Cross-Origin-Resource-Policy`).
pub async fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    any_origin(h, EXPOSED);
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}

/// CORS for a capability URL (no cookie, no credential): any origin may read the answer
/// and the `exposed` headers (never with credentials, which `*` does not allow).
pub(super) fn any_origin(h: &mut HeaderMap, exposed: &'static str) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(exposed),
    );
}

/// The CORS preflight of a download (a `fetch` with `Range`, say): `204`, with what a
/// download allows. It proves nothing and reveals nothing, so it checks no signature.
#[utoipa::path(options, path = "/v1/files/{id}/{variant}", tag = "links",
    params(("id" = String, Path), ("variant" = String, Path)),
    responses((status = 204, description = "CORS preflight: GET and HEAD from any origin, \
        with Range, If-None-Match and If-Range")))]
pub async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Range, If-None-Match, If-Range",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

#[derive(Deserialize, IntoParams)]
pub struct Signed {
    user: String,
    /// The membership the link was issued under.
    #[serde(default)]
    m: String,
    /// Unix seconds.
    expires: i64,
    sig: String,
}

/// Download through a signed link (no bearer token).
#[utoipa::path(get, path = "/v1/files/{id}/{variant}", tag = "links",
    params(("id" = String, Path), ("variant" = String, Path), Signed,
        ("Range" = Option<String>, Header, description = "one byte range")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range"),
        (status = 304, description = "ETag matched If-None-Match"),
        (status = 403, description = "bad or expired signature, or the user is no longer a member", body = ErrorBody),
        (status = 404, description = "no such variant", body = ErrorBody),
        (status = 410, description = "the media was erased", body = ErrorBody),
        (status = 416, description = "range_not_satisfiable", body = ErrorBody),
        (status = 429, description = "rate_limited: rate_downloads_per_ip or rate_downloads_per_user", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Path((id, variant)): Path<(String, String)>,
    Query(signed): Query<Signed>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Every attempt counts against its address, a forged one too.
    if let Some(peer) = peer {
        let trusted = &state.config.limits.trusted_proxies;
        let client = crate::limits::client_ip::client_ip(peer, &headers, trusted);
        state
            .limits
            .check(crate::limits::Name::DownloadsPerIp, &client.to_string(), 1)
            .await?;
    }
    let outcome = serve(&state, &id, variant, signed, &headers).await;
    state.metrics.link_check(match &outcome {
        Ok(_) => "served",
        Err(ApiError::Forbidden) => "forbidden",
        Err(ApiError::Gone | ApiError::NotFound) => "gone",
        Err(_) => "error",
    });
    outcome
}

async fn serve(
    state: &AppState,
    id: &str,
    variant: String,
    signed: Signed,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (Some(media_id), Ok(user)) = (MediaId::parse(id), UserId::parse(&signed.user)) else {
        return Err(ApiError::Forbidden);
    };
    let grant = Grant {
        media: media_id,
        variant,
        user,
        membership: signed.m,
        expires: signed.expires,
    };
    if !state.signer.verify(&grant, &signed.sig)
        || grant.expires <= OffsetDateTime::now_utc().unix_timestamp()
    {
        return Err(ApiError::Forbidden);
    }
    // Only a genuine link names its user.
    state
        .limits
        .check(
            crate::limits::Name::DownloadsPerUser,
            grant.user.as_str(),
            1,
        )
        .await?;
    // The link was genuine, so a media that is missing now was erased.
    let (stored, membership) = state
        .catalog
        .media_and_membership(&media_id, &grant.user)
        .await?
        .ok_or(ApiError::Gone)?;
    let media = stored.media;
    // Still a member, and under the same membership: one who left and came back does not
    // get the links of before.
    if membership.as_deref() != Some(grant.membership.as_str()) {
        return Err(ApiError::Forbidden);
    }
    let (key, mime, etag, filename) = if grant.variant == "original" {
        (
            original_key(&media_id),
            media.mime.clone(),
            format!("\"{}\"", media.sha256),
            media.filename.clone(),
        )
    } else {
        let v = media
            .variants
            .get(&grant.variant)
            .ok_or(ApiError::NotFound)?;
        (
            variant_key(&media_id, &grant.variant),
            v.mime.clone(),
            format!("\"{}.{}.{}\"", media_id, grant.variant, v.size),
            variant_filename(&media.filename, &grant.variant, &v.mime),
        )
    };

    let mut response_headers = HeaderMap::new();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(&mut response_headers, header::CONTENT_TYPE, &mime);
    set(
        &mut response_headers,
        header::CONTENT_DISPOSITION,
        &disposition(&mime, &filename),
    );
    set(
        &mut response_headers,
        header::X_CONTENT_TYPE_OPTIONS,
        "nosniff",
    );
    set(
        &mut response_headers,
        header::CONTENT_SECURITY_POLICY,
        "sandbox",
    );
    set(&mut response_headers, header::CACHE_CONTROL, "private");
    set(&mut response_headers, header::ETAG, &etag);
    set(&mut response_headers, header::ACCEPT_RANGES, "bytes");

    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }

    let size = state.store.size(&stored.bucket, &key).await?;
    let requested = range::parse(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, wanted) = match requested {
        Requested::Whole => (StatusCode::OK, None),
        Requested::Part(r) => {
            let content_range = format!("bytes {}-{}/{}", r.start, r.end - 1, size);
            set(&mut response_headers, header::CONTENT_RANGE, &content_range);
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
        Requested::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
    };
    let length = wanted.as_ref().map_or(size, |r| r.end - r.start);
    let object = state.store.get(&stored.bucket, &key, wanted).await?;
    set(
        &mut response_headers,
        header::CONTENT_LENGTH,
        &length.to_string(),
    );
    let body = Body::from_stream(ReaderStream::with_capacity(object.body, 64 * 1024));
    Ok((status, response_headers, body).into_response())
}
