//! `GET /v1/chats/{chat}/usage`: what a chat keeps in storage, as its quota
//! (`max_chat_bytes`) counts it.

use super::extract::Path;
use crate::catalog::Usage;
use crate::domain::ChatId;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::State;

/// The chat's storage now: bytes of originals and variants, and media (zeros for a chat with
/// nothing). Variants are counted once made, so they may take a chat past `max_chat_bytes`.
#[utoipa::path(get, path = "/v1/chats/{chat}/usage", tag = "members",
    params(("chat" = String, Path)),
    responses((status = 200, body = Usage), (status = 400, description = "invalid_id", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(chat): Path<String>,
) -> Result<axum::Json<Usage>, ApiError> {
    let chat = ChatId::parse(&chat)?;
    Ok(axum::Json(state.catalog.chat_usage(&chat).await?))
}
