//! Reading and unsending media.

use super::extract::Path;
use crate::domain::{Media, MediaId};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;

pub fn parse_id(id: &str) -> Result<MediaId, ApiError> {
    // An id that cannot exist is simply not found: ids are opaque to clients.
    MediaId::parse(id).ok_or(ApiError::NotFound)
}

/// The Media object.
#[utoipa::path(get, path = "/v1/media/{id}", tag = "media", params(("id" = String, Path)),
    responses((status = 200, body = Media), (status = 401, body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Media>, ApiError> {
    let id = parse_id(&id)?;
    let stored = state
        .catalog
        .get_media(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(stored.media))
}

/// Unsend: erase the original and every variant; links already issued stop working.
#[utoipa::path(delete, path = "/v1/media/{id}", tag = "media", params(("id" = String, Path)),
    responses((status = 204, description = "erased"), (status = 401, body = ErrorBody), (status = 404, description = "not_found", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    match crate::usecase::erase::media(&state, &id, crate::domain::EraseReason::Unsent)
        .await
        .map_err(ApiError::Internal)?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound),
    }
}
