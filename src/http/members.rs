//! Chat membership, kept current by the chat backend.

use super::extract::{Json, Path};
use crate::domain::{ChatId, UserId};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Members {
    #[schema(value_type = Vec<String>)]
    pub members: Vec<UserId>,
}

/// The new member set; ids are validated one by one (`400 invalid_id`).
#[derive(Deserialize, ToSchema)]
pub struct MembersBody {
    pub members: Vec<String>,
}

/// Add a member (idempotent).
#[utoipa::path(put, path = "/v1/chats/{chat}/members/{user}", tag = "members",
    params(("chat" = String, Path), ("user" = String, Path)),
    responses((status = 204, description = "member added"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Path((chat, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (chat, user) = (ChatId::parse(&chat)?, UserId::parse(&user)?);
    state.catalog.add_member(&chat, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member (idempotent). Their download links stop working at once.
#[utoipa::path(delete, path = "/v1/chats/{chat}/members/{user}", tag = "members",
    params(("chat" = String, Path), ("user" = String, Path)),
    responses((status = 204, description = "member removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path((chat, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (chat, user) = (ChatId::parse(&chat)?, UserId::parse(&user)?);
    state.catalog.remove_member(&chat, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the whole member set.
#[utoipa::path(put, path = "/v1/chats/{chat}/members", tag = "members",
    params(("chat" = String, Path)), request_body = MembersBody,
    responses((status = 204, description = "members replaced"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Json(body): Json<MembersBody>,
) -> Result<StatusCode, ApiError> {
    let chat = ChatId::parse(&chat)?;
    let members = body
        .members
        .iter()
        .map(|u| UserId::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    state.catalog.set_members(&chat, &members).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List the members.
#[utoipa::path(get, path = "/v1/chats/{chat}/members", tag = "members",
    params(("chat" = String, Path)),
    responses((status = 200, body = Members), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(chat): Path<String>,
) -> Result<axum::Json<Members>, ApiError> {
    let chat = ChatId::parse(&chat)?;
    let members = state.catalog.members(&chat).await?;
    Ok(axum::Json(Members { members }))
}

/// Erase the chat: every original and variant, its bucket, its members.
#[utoipa::path(delete, path = "/v1/chats/{chat}", tag = "members",
    params(("chat" = String, Path)),
    responses((status = 204, description = "chat erased"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn erase_chat(
    State(state): State<AppState>,
    Path(chat): Path<String>,
) -> Result<StatusCode, ApiError> {
    let chat = ChatId::parse(&chat)?;
    crate::usecase::erase::chat(&state, &chat)
        .await
        .map_err(ApiError::Internal)?;
    Ok(StatusCode::NO_CONTENT)
}
