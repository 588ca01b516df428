//! `POST /v1/media/{id}/links`: download links, only for current members.

use super::disposition::{disposition, variant_filename};
use super::extract::{Json, Path};
use crate::config::LinkMode;
use crate::domain::Media;
use crate::domain::UserId;
use crate::error::{ApiError, ErrorBody};
use crate::links::Grant;
use crate::state::AppState;
use crate::storage::{original_key, variant_key};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Used when a request names no TTL (and clamped like any other).
const DEFAULT_TTL: Duration = Duration::from_secs(300);

#[derive(Deserialize, ToSchema)]
pub struct LinkRequest {
    /// Must be a current member of the media's chat.
    user: String,
    /// `original` and/or variant names; defaults to `["original"]`.
    #[serde(default)]
    variants: Vec<String>,
    /// Clamped to `SATCHEL_LINK_MAX_TTL_SECONDS`.
    ttl_seconds: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct LinkResponse {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    links: BTreeMap<String, String>,
}

/// Issue signed download links.
#[utoipa::path(post, path = "/v1/media/{id}/links", tag = "links", params(("id" = String, Path)),
    request_body = LinkRequest,
    responses((status = 200, body = LinkResponse),
        (status = 400, description = "invalid_id, unknown_variant", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not_a_member", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "variant_not_ready", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn issue(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<LinkRequest>,
) -> Result<axum::Json<LinkResponse>, ApiError> {
    let id = super::media::parse_id(&id)?;
    let user = UserId::parse(&body.user)?;
    let stored = state
        .catalog
        .get_media(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let media = &stored.media;
    let names = match body.variants.is_empty() {
        true => vec!["original".to_owned()],
        false => body.variants,
    };
    for name in &names {
        if name != "original" && !media.kind.variant_names().contains(&name.as_str()) {
            return Err(ApiError::UnknownVariant(name.clone()));
        }
    }
    if !state.catalog.is_member(&media.chat_id, &user).await? {
        return Err(ApiError::NotAMember);
    }
    for name in &names {
        if name != "original" && !media.variants.contains_key(name) {
            return Err(ApiError::VariantNotReady(name.clone()));
        }
    }
    let ttl = body
        .ttl_seconds
        .map_or(DEFAULT_TTL, Duration::from_secs)
        .clamp(Duration::from_secs(1), state.config.link_max_ttl);
    // Whole seconds, so that a presigned URL (whose X-Amz-Date has no fraction) expires at
    // exactly `expires_at` and names the TTL asked for.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    let mut expires_at = now + ttl;
    // A link never outlives its media.
    if let Some(media_expiry) = media.expires_at {
        expires_at = expires_at.min(media_expiry);
    }
    let mut links = BTreeMap::new();
    if state.config.link_mode == LinkMode::Presigned {
        let ttl = Duration::from_secs((expires_at - now).whole_seconds().max(1) as u64);
        for variant in names {
            let url = presigned(&state, &stored.bucket, media, &variant, now.into(), ttl).await?;
            links.insert(variant, url);
        }
        state.metrics.links_issued.inc_by(links.len() as u64);
        return Ok(axum::Json(LinkResponse { expires_at, links }));
    }
    for variant in names {
        let grant = Grant {
            media: id,
            variant: variant.clone(),
            user: user.clone(),
            expires: expires_at.unix_timestamp(),
        };
        let url = format!(
            "{}/v1/files/{}/{}?user={}&expires={}&sig={}",
            state.public_url,
            id,
            variant,
            user,
            grant.expires,
            state.signer.sign(&grant)
        );
        links.insert(variant, url);
    }
    state.metrics.links_issued.inc_by(links.len() as u64);
    Ok(axum::Json(LinkResponse { expires_at, links }))
}

/// An S3 presigned URL that answers with the same type and disposition as a service download.
async fn presigned(
    state: &AppState,
    bucket: &str,
    media: &Media,
    variant: &str,
    signed_at: std::time::SystemTime,
    ttl: Duration,
) -> Result<String, ApiError> {
    let (key, mime, filename) = match media.variants.get(variant) {
        Some(v) if variant != "original" => (
            variant_key(&media.id, variant),
            v.mime.as_str(),
            variant_filename(&media.filename, variant, &v.mime),
        ),
        _ => (
            original_key(&media.id),
            media.mime.as_str(),
            media.filename.clone(),
        ),
    };
    state
        .store
        .presign_get(
            bucket,
            &key,
            signed_at,
            ttl,
            mime,
            &disposition(mime, &filename),
        )
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("this store cannot presign links")))
}
