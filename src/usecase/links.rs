//! Issuing download links: only to current members, for variants that exist, never outliving
//! the media. Service links are HMAC-signed URLs of this service; presigned ones come from S3.

use crate::config::LinkMode;
use crate::domain::disposition::{disposition, variant_filename};
use crate::domain::{Media, MediaId, UserId};
use crate::error::ApiError;
use crate::links::Grant;
use crate::state::AppState;
use crate::storage::{original_key, variant_key};
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Used when a request names no TTL (and clamped like any other).
const DEFAULT_TTL: Duration = Duration::from_secs(300);

pub struct Issued {
    pub expires_at: OffsetDateTime,
    /// By variant name (`original` included).
    pub links: BTreeMap<String, String>,
}

/// Links to `variants` of media `id` for `user` (`["original"]` when empty), valid for
/// `ttl_seconds` clamped to the configured maximum.
pub async fn issue(
    state: &AppState,
    id: &MediaId,
    user: UserId,
    variants: Vec<String>,
    ttl_seconds: Option<u64>,
) -> Result<Issued, ApiError> {
    if ttl_seconds == Some(0) {
        return Err(ApiError::BadRequest(
            "ttl_seconds must be at least 1 (a link that is born expired is no link)".into(),
        ));
    }
    let (stored, membership) = state
        .catalog
        .media_and_membership(id, &user)
        .await?
        .ok_or(ApiError::NotFound)?;
    let media = &stored.media;
    let names = match variants.is_empty() {
        true => vec!["original".to_owned()],
        false => variants,
    };
    for name in &names {
        if name != "original" && !media.kind.variant_names().contains(&name.as_str()) {
            return Err(ApiError::UnknownVariant(name.clone()));
        }
    }
    let Some(membership) = membership else {
        return Err(ApiError::NotAMember);
    };
    state
        .limits
        .check(crate::limits::Name::LinksPerUser, user.as_str(), 1)
        .await?;
    for name in &names {
        if name != "original" && !media.variants.contains_key(name) {
            return Err(ApiError::VariantNotReady(name.clone()));
        }
    }
    let ttl = ttl_seconds
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
            let url = presigned(state, &stored.bucket, media, &variant, now.into(), ttl).await?;
            links.insert(variant, url);
        }
        state.metrics.links_issued.inc_by(links.len() as u64);
        return Ok(Issued { expires_at, links });
    }
    for variant in names {
        let grant = Grant {
            media: *id,
            variant: variant.clone(),
            user: user.clone(),
            membership: membership.clone(),
            expires: expires_at.unix_timestamp(),
        };
        let url = format!(
            "{}/v1/files/{}/{}?user={}&m={}&expires={}&sig={}",
            state.public_url,
            id,
            variant,
            user,
            grant.membership,
            grant.expires,
            state.signer.sign(&grant)
        );
        links.insert(variant, url);
    }
    state.metrics.links_issued.inc_by(links.len() as u64);
    Ok(Issued { expires_at, links })
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
