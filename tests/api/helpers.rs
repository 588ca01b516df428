use reqwest::{Method, RequestBuilder, Response, StatusCode};
use satchel::{Application, Config};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const TOKEN: &str = "test-token-0123456789";

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: TempDir,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The settings every test starts from; `extra` adds or overrides `SATCHEL_*` variables.
pub fn test_config(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = vec![
        ("SATCHEL_LISTEN".into(), "127.0.0.1:0".into()),
        ("SATCHEL_DATA_DIR".into(), dir.display().to_string()),
        ("SATCHEL_API_TOKENS".into(), TOKEN.into()),
        ("SATCHEL_WORKERS".into(), "2".into()),
        ("SATCHEL_LINK_SECRET".into(), "test-link-secret".into()),
        ("SATCHEL_SWEEP_INTERVAL_SECONDS".into(), "1".into()),
        ("SATCHEL_SHUTDOWN_GRACE_SECONDS".into(), "10".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(key, _)| key != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Config::load_from(None, vars.into_iter()).expect("test config is valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_in(dir, extra).await
}

pub async fn spawn_in(dir: TempDir, extra: &[(&str, &str)]) -> TestApp {
    let config = test_config(dir.path(), extra);
    let app = Application::build(config).await.expect("the app builds");
    let addr = app.local_addr();
    // The process-lifecycle tests cover shutdown; here the server lives as long as the test.
    let task = tokio::spawn(app.run(std::future::pending()));
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        dir,
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    pub async fn add_member(&self, chat: &str, user: &str) {
        let r = self
            .api(Method::PUT, &format!("/v1/chats/{chat}/members/{user}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }

    pub async fn remove_member(&self, chat: &str, user: &str) {
        let r = self
            .api(Method::DELETE, &format!("/v1/chats/{chat}/members/{user}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }

    pub fn upload_request(&self, chat: &str, user: &str, filename: &str) -> RequestBuilder {
        self.api(
            Method::POST,
            &format!("/v1/chats/{chat}/media?user={user}&filename={filename}"),
        )
    }

    pub async fn upload(&self, chat: &str, user: &str, filename: &str, body: Vec<u8>) -> Response {
        self.upload_request(chat, user, filename)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Adds `user` to `chat` and uploads; asserts the upload was accepted.
    pub async fn upload_ok(&self, chat: &str, user: &str, filename: &str, body: Vec<u8>) -> Value {
        self.add_member(chat, user).await;
        let r = self.upload(chat, user, filename, body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    pub async fn media(&self, id: &str) -> Response {
        self.api(Method::GET, &format!("/v1/media/{id}"))
            .send()
            .await
            .unwrap()
    }

    /// Polls until the media leaves `processing`.
    pub async fn wait_processed(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.media(id).await;
            assert_eq!(r.status(), StatusCode::OK);
            let media: Value = r.json().await.unwrap();
            if media["status"] != "processing" {
                return media;
            }
            assert!(Instant::now() < deadline, "still processing: {media}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn links(&self, id: &str, body: Value) -> Response {
        self.api(Method::POST, &format!("/v1/media/{id}/links"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Issues one link and returns its URL.
    pub async fn link(&self, id: &str, user: &str, variant: &str) -> String {
        let r = self
            .links(id, json!({"user": user, "variants": [variant]}))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        let body: Value = r.json().await.unwrap();
        body["links"][variant].as_str().unwrap().to_owned()
    }

    /// Every file under the data directory's object store and scratch areas.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        ["objects", "tmp", "work"]
            .iter()
            .flat_map(|d| walk(&self.dir.path().join(d)))
            .collect()
    }
}

impl TestApp {
    /// Originals committed to the object store (not job scratch copies).
    pub fn stored_originals(&self) -> usize {
        walk(&self.dir.path().join("objects"))
            .iter()
            .filter(|p| p.ends_with("original"))
            .count()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Asserts an error response: status and stable code.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.expect("errors are JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string());
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
