//! Dead event deliveries: listed, and re-queued.

use crate::catalog::DeadEvent;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Dead deliveries listed at most per call.
const MAX_LIMIT: u32 = 1000;

/// A delivery given up on: the event, the sink that did not take it, and why.
#[derive(Serialize, ToSchema)]
pub struct DeadDelivery {
    /// The event's ULID, as in its body.
    event_id: String,
    /// `media.ready`, `media.failed`, `media.erased` or `chat.erased`.
    event: String,
    /// `webhook` (the broker's exchange is retried for ever).
    sink: String,
    chat_id: String,
    media_id: Option<String>,
    attempts: u32,
    /// The last failure, in words (`the webhook answered 500 Internal Server Error`, ...).
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// The body that would be delivered.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct DeadList {
    /// Oldest first.
    dead: Vec<DeadDelivery>,
}

#[derive(Serialize, ToSchema)]
pub struct Requeued {
    /// Deliveries made pending again.
    requeued: u64,
}

fn limit_of(query: Option<&str>) -> Result<u32, ApiError> {
    let mut limit = 100;
    for (key, value) in form_pairs(query.unwrap_or_default()) {
        if key == "limit" {
            limit = value
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be a whole number 1-{MAX_LIMIT}"))
                })?;
        }
    }
    Ok(limit)
}

fn form_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn listed(dead: DeadEvent) -> DeadDelivery {
    let e = dead.event;
    DeadDelivery {
        created_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.created_at) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        body: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::String(e.body)),
        event_id: e.event_id,
        event: e.event,
        sink: dead.sink.as_str().into(),
        chat_id: e.chat_id,
        media_id: dead.media_id,
        attempts: e.attempts,
        last_error: dead.last_error,
    }
}

/// Event deliveries given up on after `webhook_max_age_seconds` of failures, oldest first.
#[utoipa::path(get, path = "/v1/events/dead", tag = "events",
    params(("limit" = Option<u32>, Query, description = "At most this many (1-1000, default 100).")),
    responses((status = 200, body = DeadList), (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn dead(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeadList>, ApiError> {
    let limit = limit_of(query.as_deref())?;
    let dead = state.catalog.dead_events(limit).await?;
    Ok(Json(DeadList {
        dead: dead.into_iter().map(listed).collect(),
    }))
}

/// Re-queues every dead delivery: due at once, retried for `webhook_max_age_seconds` again.
#[utoipa::path(post, path = "/v1/events/dead/retry", tag = "events",
    responses((status = 200, body = Requeued), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry(State(state): State<AppState>) -> Result<Json<Requeued>, ApiError> {
    let requeued = state.catalog.retry_dead_events().await?;
    if requeued > 0 {
        tracing::info!(requeued, "dead event deliveries re-queued");
    }
    Ok(Json(Requeued { requeued }))
}
