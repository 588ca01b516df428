use crate::helpers::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn a_call_without_a_token_is_unauthorized() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/v1/chats/c1/members"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/v1/chats/c1/members"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn with_no_token_configured_one_is_generated_kept_private_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(dir, &[("SATCHEL_API_TOKENS", "")]).await;
    let path = app.dir.path().join("api-token");
    let token = std::fs::read_to_string(&path).unwrap();
    assert!(token.trim().len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let open = app
        .client
        .get(app.url("/v1/chats/c1/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .request(Method::GET, app.url("/v1/chats/c1/members"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// RFC 9110: the authentication scheme is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_matches_in_any_case() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = app
            .client
            .get(app.url("/v1/chats/c1/members"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    let r = app
        .client
        .get(app.url("/v1/chats/c1/members"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// The data directory holds the secrets and the catalog: nobody else may read it.
#[tokio::test]
async fn the_data_directory_and_catalog_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // As an operator's `mkdir` would leave it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = spawn_in(dir, &[]).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(app.dir.path()), 0o700);
    if !real_backend() {
        assert_eq!(mode(&app.dir.path().join("catalog.db")), 0o600);
    }
}
