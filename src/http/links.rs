//! `POST /v1/media/{id}/links`: download links, only for current members.

use super::extract::{Json, Path};
use crate::domain::UserId;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::usecase::links::Issued;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use utoipa::ToSchema;

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
    let Issued { expires_at, links } =
        crate::usecase::links::issue(&state, &id, user, body.variants, body.ttl_seconds).await?;
    Ok(axum::Json(LinkResponse { expires_at, links }))
}
