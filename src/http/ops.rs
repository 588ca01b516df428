//! Health, readiness, metrics and the OpenAPI document.

use crate::codes::ready;
use crate::error::{ErrorBody, ErrorDetail};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// 200 when storage, catalog and queue answer; 503 naming the one that does not.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "storage_unavailable, catalog_unavailable or queue_unavailable", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state
        .readiness
        .get_or_refresh(FRESH_FOR, check_backends(&state))
        .await
    {
        None => axum::Json(json!({
            "status": "ready",
            "storage": state.store.name(),
            "catalog": state.catalog.name(),
            "queue": state.queue.name(),
        }))
        .into_response(),
        Some((what, code)) => {
            let body = ErrorBody {
                error: ErrorDetail {
                    code: code.code,
                    message: format!("{what} does not answer"),
                },
            };
            (code.status, axum::Json(body)).into_response()
        }
    }
}

/// The backend that does not answer, and the code `/readyz` names it with.
type Failing = (&'static str, crate::codes::ApiCode);

/// `/readyz` keeps its answer this long: a load balancer (or an attacker) polling it costs the
/// backends one round of checks a second, and concurrent calls wait for one round
/// ([`crate::state::Memo`]) instead of each starting its own.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The backend that does not answer, by checking all three.
async fn check_backends(state: &AppState) -> Option<Failing> {
    state.metrics.readiness_checks.inc();
    let (what, code, cause) = if let Err(e) = state.store.check().await {
        (
            "storage",
            ready::STORAGE_UNAVAILABLE,
            crate::error::causes(&e),
        )
    } else if let Err(e) = state.catalog.ping().await {
        (
            "catalog",
            ready::CATALOG_UNAVAILABLE,
            crate::error::causes(&e),
        )
    } else if let Err(e) = state.queue.check().await {
        ("queue", ready::QUEUE_UNAVAILABLE, crate::error::causes(&e))
    } else {
        return None;
    };
    tracing::warn!(backend = what, error = %cause, "not ready");
    Some((what, code))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(depth) = state.queue.depth().await {
        state.metrics.queue_depth.set(depth as i64);
    }
    if let Ok(counts) = state.catalog.event_counts().await {
        state.metrics.event_counts(&counts);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}
