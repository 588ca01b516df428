use reqwest::{Method, RequestBuilder, Response, StatusCode};
use satchel::config::S3Settings;
use satchel::{Application, Config};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const TOKEN: &str = "test-token-0123456789";

/// As the value of an extra variable for [`test_config`]: leave that variable out.
pub const UNSET: &str = "\0unset";

/// The extra variables that give an app the filesystem store even in the real-backend run
/// (the catalog and queue stay real), for tests that must make the store misbehave.
pub const FILESYSTEM_STORE: [(&str, &str); 4] = [
    ("SATCHEL_S3_ENDPOINT", UNSET),
    ("SATCHEL_S3_ACCESS_KEY_ID", UNSET),
    ("SATCHEL_S3_SECRET_ACCESS_KEY", UNSET),
    ("SATCHEL_S3_BUCKET_PREFIX", UNSET),
];

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: TempDir,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Stops the app as SIGTERM would, for [`TestApp::restart_with`].
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The app's PostgreSQL catalog in the real-backend run; dropped after `Drop for TestApp`
    /// has stopped the app.
    pub database: Option<TestDatabase>,
    _broker: Option<TestBroker>,
    /// The S3 store the app uses, when the backend is real.
    pub s3: Option<S3Settings>,
}

/// `SATCHEL_TEST_BACKEND=real`: the suite runs against real PostgreSQL (and the other real
/// services) instead of the embedded backends.
pub fn real_backend() -> bool {
    std::env::var("SATCHEL_TEST_BACKEND").is_ok_and(|v| v == "real")
}

/// A fresh PostgreSQL database for one test app, dropped with it. Run scripts also drop
/// `satchel_t_%` databases left by killed runs.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Panics when the server cannot be reached: in the real-backend run, a missing
    /// database is a failure, never a reason to skip.
    pub async fn create() -> Self {
        use sqlx::{Connection, Executor};
        let admin_url = std::env::var("SATCHEL_TEST_DATABASE_URL").expect(
            "SATCHEL_TEST_BACKEND=real needs SATCHEL_TEST_DATABASE_URL, \
             e.g. postgres://postgres@127.0.0.1:5432/test",
        );
        let name = format!("satchel_t_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to SATCHEL_TEST_DATABASE_URL: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = reqwest::Url::parse(&admin_url).expect("SATCHEL_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            url: url.to_string(),
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which must not block on itself; a thread with
        // its own runtime can. FORCE ends the stopped app's pooled connections.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                conn.execute(sql.as_str()).await.ok()
            })
        })
        .join();
    }
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
        (
            "SATCHEL_LINK_SECRET".into(),
            "test-link-secret-0123456789abcdef".into(),
        ),
        ("SATCHEL_SWEEP_INTERVAL_SECONDS".into(), "1".into()),
        ("SATCHEL_SHUTDOWN_GRACE_SECONDS".into(), "10".into()),
        // The app runs inside this test binary: the transform binary is not beside it.
        (
            "SATCHEL_WORKER_EXE".into(),
            env!("CARGO_BIN_EXE_satchel-transform").into(),
        ),
    ];
    if real_backend() {
        vars.extend(s3_test_vars());
        vars.extend(amqp_test_vars());
    }
    for (k, v) in extra {
        vars.retain(|(key, _)| key != k);
        if *v != UNSET {
            vars.push((k.to_string(), v.to_string()));
        }
    }
    Config::load_from(None, vars.into_iter()).expect("test config is valid")
}

/// The S3 store's settings for one test app: the `SATCHEL_TEST_S3_*` server (Garage in CI,
/// `eval "$(scripts/garage.sh env)"`) and a bucket prefix of its own, so that concurrent tests
/// never see each other's buckets. Panics when the server is not configured: in the
/// real-backend run a missing store is a failure, never a reason to skip.
pub fn s3_test_vars() -> Vec<(String, String)> {
    use rand::distr::{Alphanumeric, SampleString};
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "SATCHEL_TEST_BACKEND=real needs {name}; run eval \"$(scripts/garage.sh env)\" first"
            )
        })
    };
    let prefix = format!(
        "t{}-",
        Alphanumeric
            .sample_string(&mut rand::rng(), 8)
            .to_lowercase()
    );
    vec![
        (
            "SATCHEL_S3_ENDPOINT".into(),
            var("SATCHEL_TEST_S3_ENDPOINT"),
        ),
        ("SATCHEL_S3_REGION".into(), var("SATCHEL_TEST_S3_REGION")),
        (
            "SATCHEL_S3_ACCESS_KEY_ID".into(),
            var("SATCHEL_TEST_S3_ACCESS_KEY_ID"),
        ),
        (
            "SATCHEL_S3_SECRET_ACCESS_KEY".into(),
            var("SATCHEL_TEST_S3_SECRET_ACCESS_KEY"),
        ),
        ("SATCHEL_S3_BUCKET_PREFIX".into(), prefix),
        ("SATCHEL_S3_PATH_STYLE".into(), "true".into()),
    ]
}

/// The broker for one test app: the `SATCHEL_TEST_AMQP_URL` server with queue and exchange
/// names of its own, so that concurrent tests never take each other's jobs.
pub fn amqp_test_vars() -> Vec<(String, String)> {
    let url = std::env::var("SATCHEL_TEST_AMQP_URL").unwrap_or_else(|_| {
        panic!("SATCHEL_TEST_BACKEND=real needs SATCHEL_TEST_AMQP_URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f")
    });
    let prefix = format!("t{}", ulid::Ulid::new().to_string().to_lowercase());
    vec![
        ("SATCHEL_AMQP_URL".into(), url),
        ("SATCHEL_AMQP_PREFIX".into(), prefix),
    ]
}

/// One test's queues and exchanges on the test broker, deleted with it: quorum queues hold
/// memory on the broker, and a run makes hundreds.
pub struct TestBroker {
    url: String,
    prefix: String,
}

impl TestBroker {
    /// The objects under `prefix` on the broker at `url`, deleted when this is dropped.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    pub fn of(config: &Config) -> Option<Self> {
        Some(Self {
            url: config.amqp_url.clone()?,
            prefix: config.amqp_prefix.clone(),
        })
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        block_on(async move {
            let connection =
                lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                    .await
                    .ok()?;
            let channel = connection.create_channel().await.ok()?;
            for kind in ["image", "audio", "video", "dead"] {
                let queue = format!("{prefix}.jobs.{kind}");
                let _ = channel
                    .queue_delete(&queue, QueueDeleteOptions::default())
                    .await;
            }
            for exchange in ["events", "dlx"] {
                let exchange = format!("{prefix}.{exchange}");
                let _ = channel
                    .exchange_delete(&exchange, ExchangeDeleteOptions::default())
                    .await;
            }
            connection.close(200, "test over").await.ok()
        });
    }
}

/// A client of the test S3 server, for looking behind the service's back.
pub fn s3_client(s3: &S3Settings) -> aws_sdk_s3::Client {
    use secrecy::ExposeSecret;
    let credentials = aws_sdk_s3::config::Credentials::new(
        &s3.access_key_id,
        s3.secret_access_key.expose_secret(),
        None,
        None,
        "satchel-tests",
    );
    let mut config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .credentials_provider(credentials)
        .region(aws_sdk_s3::config::Region::new(s3.region.clone()))
        .force_path_style(true);
    if let Some(endpoint) = &s3.endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// Runs `f` to completion on a runtime of its own: the sync helpers below must not block the
/// test's runtime on itself.
fn block_on<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f)
            })
            .join()
            .unwrap()
    })
}

/// Every object and every unfinished multipart upload in the buckets under `s3`'s prefix,
/// as `s3://bucket/key` and `s3-upload://bucket/key`.
pub async fn s3_listing(s3: &S3Settings) -> (Vec<String>, Vec<PathBuf>) {
    let client = s3_client(s3);
    let buckets: Vec<String> = client
        .list_buckets()
        .send()
        .await
        .expect("the test S3 server lists buckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|name| name.starts_with(&s3.bucket_prefix))
        .map(str::to_owned)
        .collect();
    let mut found = Vec::new();
    for bucket in &buckets {
        let objects = client
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("the test S3 server lists objects");
        for key in objects.contents().iter().filter_map(|o| o.key()) {
            found.push(PathBuf::from(format!("s3://{bucket}/{key}")));
        }
        let uploads = client
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .expect("the test S3 server lists multipart uploads");
        for key in uploads.uploads().iter().filter_map(|u| u.key()) {
            found.push(PathBuf::from(format!("s3-upload://{bucket}/{key}")));
        }
    }
    (buckets, found)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_in(dir, extra).await
}

pub async fn spawn_in(dir: TempDir, extra: &[(&str, &str)]) -> TestApp {
    let database = match real_backend() {
        true => Some(TestDatabase::create().await),
        false => None,
    };
    launch(dir, database, extra).await
}

async fn launch(dir: TempDir, database: Option<TestDatabase>, extra: &[(&str, &str)]) -> TestApp {
    let mut extra = extra.to_vec();
    if let Some(db) = &database {
        extra.insert(0, ("SATCHEL_DATABASE_URL", db.url.as_str()));
    }
    let config = test_config(dir.path(), &extra);
    let s3 = config.s3.clone();
    let broker = TestBroker::of(&config);
    // With a broker the API node runs no workers by default; the suite wants both in one.
    let role = satchel::app::Role {
        api: true,
        workers: Some((
            satchel::domain::Kind::ALL_PROCESSED.to_vec(),
            config.workers,
        )),
    };
    let app = Application::build(config)
        .await
        .expect("the app builds")
        .with_role(role);
    let addr = app.local_addr();
    // The server lives as long as the test, or until `restart_with` stops it.
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stop.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        dir,
        task: Some(task),
        shutdown: Some(shutdown),
        database,
        _broker: broker,
        s3,
    }
}

impl TestApp {
    /// Stops the app as SIGTERM would (it drains and finishes its jobs), then starts it again
    /// on the same data directory, catalog and bucket prefix, with `extra` on top of the test
    /// settings: a deployment upgraded or reconfigured.
    pub async fn restart_with(mut self, extra: &[(&str, &str)]) -> TestApp {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("the app stops within a minute")
                .expect("the app's task ends")
                .expect("the app stops cleanly");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let prefix = self.s3.as_ref().map(|s3| s3.bucket_prefix.clone());
        let mut extra = extra.to_vec();
        if let Some(prefix) = &prefix {
            extra.insert(0, ("SATCHEL_S3_BUCKET_PREFIX", prefix.as_str()));
        }
        launch(dir, self.database.take(), &extra).await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    /// `GET /openapi.json`, parsed.
    pub async fn openapi(&self) -> Value {
        let r = self
            .client
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// `DELETE /v1/chats/{chat}`; asserts `204`.
    /// `/readyz` once it answers `status`: its answer is kept for a second, so a change shows
    /// within about that. Fails after 5 s.
    pub async fn readyz_becomes(&self, status: StatusCode) -> Response {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = self.client.get(self.url("/readyz")).send().await.unwrap();
            if r.status() == status || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn erase_chat(&self, chat: &str) {
        let r = self
            .api(Method::DELETE, &format!("/v1/chats/{chat}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
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

    /// Every file under the data directory's object store and scratch areas; with S3, every
    /// object and unfinished multipart upload in the app's buckets too.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = ["objects", "tmp", "work"]
            .iter()
            .flat_map(|d| walk(&self.dir.path().join(d)))
            .collect();
        if let Some(s3) = &self.s3 {
            files.extend(block_on(s3_listing(s3)).1);
        }
        files
    }

    /// How many chat buckets the store holds.
    pub fn bucket_count(&self) -> usize {
        match &self.s3 {
            Some(s3) => block_on(s3_listing(s3)).0.len(),
            None => std::fs::read_dir(self.dir.path().join("objects")).map_or(0, |d| d.count()),
        }
    }

    /// The store's name in `/readyz`.
    pub fn storage_name(&self) -> &'static str {
        match self.s3 {
            Some(_) => "s3",
            None => "filesystem",
        }
    }
}

impl TestApp {
    /// Originals committed to the object store (not job scratch copies).
    pub fn stored_originals(&self) -> usize {
        let mut objects = walk(&self.dir.path().join("objects"));
        if let Some(s3) = &self.s3 {
            objects.extend(
                block_on(s3_listing(s3))
                    .1
                    .into_iter()
                    .filter(|p| p.to_string_lossy().starts_with("s3://")),
            );
        }
        objects.iter().filter(|p| p.ends_with("original")).count()
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

/// A PNG that decodes to `side`² RGB pixels but is only a few kilobytes on the wire.
pub fn flat_png(side: u32) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(side, side, image::Rgb([40, 120, 200]));
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}
