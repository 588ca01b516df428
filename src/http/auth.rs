//! Service authentication: `Authorization: Bearer <token>` on every `/v1` call except signed
//! downloads.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal-length digests compared without an early exit, so timing says nothing about a token.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials of `Bearer <token>`; the scheme name is case-insensitive (RFC 9110).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(token_hash);
    let accepted = presented.is_some_and(|p| {
        // Every hash is compared, so the position of a match leaks nothing either.
        state
            .token_hashes
            .iter()
            .fold(false, |ok, h| ok | same(h, &p))
    });
    if !accepted {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}
