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
    let app = spawn_app_with(&FILESYSTEM_STORE).await;
    let (_, objects) = stored_photo(&app).await;
    // The job's scratch directory goes just after the job is recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !walk(&app.dir.path().join("work")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "scratch files stay");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(objects.len(), 4, "{objects:?}");
}

/// Uploads the photo fixture to the filesystem store and waits until it is ready; asserts that
/// its original and three variants are stored, non-empty, mode 0600 and with one name each, and
/// returns the media id and their paths.
async fn stored_photo(app: &TestApp) -> (String, Vec<std::path::PathBuf>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let media = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let id = media["id"].as_str().unwrap().to_owned();
    let done = app.wait_processed(&id).await;
    assert_eq!(done["status"], "ready", "{done}");
    let objects = walk(&app.dir.path().join("objects"));
    for name in ["original", "thumbnail", "preview", "blurred"] {
        assert!(
            objects.iter().any(|p| p.ends_with(name)),
            "no {name}: {objects:?}"
        );
    }
    for path in &objects {
        let meta = std::fs::metadata(path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        assert_eq!(meta.nlink(), 1, "{} has another name", path.display());
        assert!(meta.len() > 0, "{} is empty", path.display());
    }
    (id, objects)
}

/// A tmpfs mounted at the data directory's `work/`, as an operator may put jobs' scratch
/// files in memory, unmounted when dropped.
struct ScratchMount(std::path::PathBuf);

impl ScratchMount {
    fn new(work: &std::path::Path) -> Self {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        std::fs::create_dir_all(work).unwrap();
        let target = CString::new(work.as_os_str().as_bytes()).unwrap();
        let fstype = CString::new("tmpfs").unwrap();
        let options = CString::new("size=64m,mode=0700").unwrap();
        // SAFETY: NUL-terminated strings that outlive the call. Needs root, as CI runs.
        let mounted = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            mounted,
            0,
            "mount a tmpfs at {} (the suite runs as root): {}",
            work.display(),
            std::io::Error::last_os_error()
        );
        ScratchMount(work.to_path_buf())
    }
}

impl Drop for ScratchMount {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: as above; lazily, in case a process of the app still has a file there.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// With jobs' scratch directory on a filesystem of its own, the store can neither link the
/// original into it nor move an output out of it: it copies both ways instead, and what it
/// stores is the same (every variant there, private, with one name each).
/// The app starts on such a mount point, emptying it of an earlier run's files rather than
/// trying to remove the directory.
#[tokio::test]
async fn scratch_on_a_filesystem_of_its_own_is_copied_across() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let _mount = ScratchMount::new(&work);
    std::fs::create_dir(work.join("job-of-an-earlier-run")).unwrap();
    std::fs::write(work.join("job-of-an-earlier-run/original"), b"stale").unwrap();
    let app = spawn_in(dir, &FILESYSTEM_STORE).await;
    assert!(walk(&work).is_empty(), "an earlier run's scratch stays");
    let (id, objects) = stored_photo(&app).await;
    let scratch_device = std::fs::metadata(&work).unwrap().dev();
    for path in &objects {
        assert_ne!(std::fs::metadata(path).unwrap().dev(), scratch_device);
    }
    let preview = app.link(&id, "u1", "preview").await;
    let got = app.client.get(&preview).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let bytes = got.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"RIFF", "a WebP preview");
}
