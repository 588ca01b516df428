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

/// The filesystem store moves a job's outputs into place instead of copying them and links the
/// original into the job's scratch directory instead of copying it. Every object it holds is
/// still readable by satchel's user alone, and once the job has ended the original has no
/// second name left behind (in the real-backend run too: only the store is the filesystem).
#[tokio::test]
async fn the_filesystem_stores_objects_are_private_and_have_one_name_each() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let app = spawn_app_with(&FILESYSTEM_STORE).await;
    let media = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    let objects = walk(&app.dir.path().join("objects"));
    let names: Vec<String> = objects
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    for name in ["original", "thumbnail", "preview", "blurred"] {
        assert!(names.iter().any(|n| n == name), "no {name}: {names:?}");
    }
    // The job's scratch directory goes just after the job is recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !walk(&app.dir.path().join("work")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "scratch files stay");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for path in &objects {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            path.display()
        );
        assert_eq!(meta.nlink(), 1, "{} has another name", path.display());
    }
}
