//! The HTTP API of `../shared/API.md`: routing, authentication, and one module per resource.

mod auth;
mod body;
pub mod conn;
mod events;
mod extract;
mod files;
mod links;
mod media;
mod members;
mod multipart;
mod openapi;
mod ops;
mod range;
mod tus;
mod upload;
mod usage;

pub use auth::token_hash;
pub use extract::PeerAddr;
pub use openapi::document as openapi_document;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

/// Bodies of the small JSON calls (links, member sets).
const JSON_BODY_LIMIT: usize = 1 << 20;

/// A worker process serves only health, readiness and metrics.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/chats/{chat}/members",
            put(members::replace).get(members::list),
        )
        .route(
            "/chats/{chat}/members/{user}",
            put(members::add).delete(members::remove),
        )
        .route("/chats/{chat}", axum::routing::delete(members::erase_chat))
        .route("/chats/{chat}/usage", get(usage::get))
        .route(
            "/chats/{chat}/media",
            // The upload streams with its own limit; the default would stop multipart at 2 MB.
            post(upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/chats/{chat}/upload-tickets", post(tus::issue))
        .route("/media/{id}", get(media::get).delete(media::delete))
        .route("/media/{id}/links", post(links::issue))
        .route("/events/dead", get(events::dead))
        .route("/events/dead/retry", post(events::retry))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Signed downloads carry their own proof instead of a bearer token.
        .route(
            "/files/{id}/{variant}",
            get(files::download)
                .options(files::preflight)
                .layer(axum::middleware::map_response(files::cors)),
        )
        // Resumable uploads carry their ticket instead of a bearer token.
        .route(
            "/tus/{ticket}",
            post(tus::create)
                .head(tus::head)
                .patch(tus::patch)
                .delete(tus::terminate)
                .options(tus::options)
                .layer(DefaultBodyLimit::disable())
                .layer(axum::middleware::map_response(tus::headers)),
        );

    Router::new()
        .nest("/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(anyhow::anyhow!(
                "handler panicked"
            )))
        }))
        // Spans carry the path only: query strings hold link signatures.
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<_>| {
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
            },
        ))
        .with_state(state)
}
