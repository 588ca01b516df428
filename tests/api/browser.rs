//! What a web chat client meets, in a real browser: Debian's Chromium, headless, driven by
//! `chromedriver` over WebDriver (plain HTTP, here with reqwest). It talks to nothing beyond
//! loopback: every flag that would make it call home is set, with a profile of its own.
//!
//! A chat web client runs on its own origin; here that is a second local server serving one
//! empty page. From it the tests fetch signed links with `Range`, draw a thumbnail into a
//! canvas and read it back, and see that a bearer-token endpoint stays closed to it; then a
//! video, a voice note and an animated GIF's `animation` opened as links in a tab must play.

use crate::helpers::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Flags that keep a headless Chromium on loopback.
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--no-pings",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
];

/// One chromedriver with one browser session; both end when it is dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: scripts/install-deps.sh --test installs chromium and chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_owned();
        let browser = Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        browser
            .command("timeouts", json!({"script": 30_000, "pageLoad": 30_000}))
            .await;
        browser
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/session/{}/{path}", self.base, self.session))
            .json(&body)
            .send()
            .await
            .unwrap();
        // WebDriver answers its own errors with an error status; a script's value is 200.
        let ok = r.status().is_success();
        let r: Value = r.json().await.unwrap();
        assert!(ok, "WebDriver {path}: {r}");
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// Runs `script` as an async function body: it ends by calling `done(value)`.
    async fn run(&self, script: &str, args: Value) -> Value {
        let script = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.command("execute/async", json!({"script": script, "args": args}))
            .await
    }
}

impl Browser {
    /// Ends the session, which closes the browser.
    async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    }
}

impl Drop for Browser {
    /// The backstop when a test failed before `quit`: the driver takes its browser with it.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The web client's own origin: a server answering one empty page, and tus-js-client's
/// browser build (installed by `scripts/install-deps.sh --test`) as `/tus.min.js`.
async fn web_client_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tus_js =
        crate::tus_clients::tus_dir().join("node/node_modules/tus-js-client/dist/tus.min.js");
    let tus_js = std::fs::read_to_string(&tus_js).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/install-deps.sh --test)",
            tus_js.display()
        )
    });
    let page = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html("<!doctype html><title>chat</title><body>chat</body>")
            }),
        )
        .route(
            "/tus.min.js",
            axum::routing::get(
                move || async move { ([("content-type", "text/javascript")], tus_js) },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, page).await });
    // `localhost`, not 127.0.0.1: another origin than satchel's links, for certain.
    format!("http://localhost:{}/", addr.port())
}

/// One browser for every check, one after the other (a browser is heavy on 2 cores).
#[tokio::test]
async fn a_web_client_in_chromium() {
    let browser = Browser::start().await;
    a_web_client_on_another_origin_reads_signed_links_but_not_the_api(&browser).await;
    a_web_client_uploads_with_tus_js_client_through_its_ticket(&browser).await;
    a_video_or_voice_link_opened_in_a_tab_plays_and_an_html_file_is_not_rendered(&browser).await;
    browser.quit().await;
}

async fn a_web_client_on_another_origin_reads_signed_links_but_not_the_api(browser: &Browser) {
    let app = spawn_app().await;
    let photo = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let id = photo["id"].as_str().unwrap();
    app.wait_processed(id).await;
    let original = app.link(id, "u1", "original").await;
    let thumbnail = app.link(id, "u1", "thumbnail").await;
    let size = fixture("photo.jpg").len();
    browser.goto(&web_client_origin().await).await;

    // fetch() with a Range header: preflighted, then 206 with the exposed headers readable.
    let got = browser
        .run(
            "fetch(arguments[0], {headers: {Range: 'bytes=0-3'}})
               .then(async r => done({status: r.status,
                   range: r.headers.get('content-range'),
                   etag: r.headers.get('etag'),
                   disposition: r.headers.get('content-disposition'),
                   bytes: Array.from(new Uint8Array(await r.arrayBuffer()))}))
               .catch(e => done({error: String(e)}))",
            json!([original]),
        )
        .await;
    assert_eq!(got["status"], 206, "{got}");
    assert_eq!(got["range"], format!("bytes 0-3/{size}"), "{got}");
    assert!(got["etag"].is_string(), "{got}");
    assert!(got["disposition"].is_string(), "{got}");
    assert_eq!(got["bytes"], json!(fixture("photo.jpg")[..4]), "{got}");

    // A thumbnail drawn into a canvas stays readable (the canvas is not tainted).
    let got = browser
        .run(
            "const img = new Image(); img.crossOrigin = 'anonymous';
             img.onload = () => { try {
                 const c = document.createElement('canvas');
                 c.width = img.naturalWidth; c.height = img.naturalHeight;
                 const g = c.getContext('2d'); g.drawImage(img, 0, 0);
                 const px = g.getImageData(0, 0, 1, 1).data;
                 done({width: img.naturalWidth, alpha: px[3]});
               } catch (e) { done({error: String(e)}); } };
             img.onerror = () => done({error: 'the image did not load'});
             img.src = arguments[0];",
            json!([thumbnail]),
        )
        .await;
    assert!(got["width"].as_u64().unwrap_or(0) > 0, "{got}");
    assert_eq!(got["alpha"], 255, "{got}");

    // A revoked link: the 403 itself is readable, so the client can tell why.
    app.remove_member("c1", "u1").await;
    let got = browser
        .run(
            "fetch(arguments[0]).then(async r => done({status: r.status, body: await r.json()}))
               .catch(e => done({error: String(e)}))",
            json!([original]),
        )
        .await;
    assert_eq!(got["status"], 403, "{got}");
    assert_eq!(got["body"]["error"]["code"], "forbidden", "{got}");

    // The bearer-token API answers no CORS: the browser refuses the page the answer.
    let got = browser
        .run(
            "fetch(arguments[0], {headers: {Authorization: 'Bearer ' + arguments[1]}})
               .then(r => done({status: r.status})).catch(e => done({error: String(e)}))",
            json!([app.url(&format!("/v1/media/{id}")), TOKEN]),
        )
        .await;
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{got}"
    );
}

/// tus-js-client's browser build on another origin than satchel's: every request
/// preflighted, the upload's headers read back (`Location`, `Upload-Offset`,
/// `Satchel-Media-Id`), with the ticket as the only credential.
async fn a_web_client_uploads_with_tus_js_client_through_its_ticket(browser: &Browser) {
    let app = spawn_app().await;
    let url = crate::tus::ticket(&app, "c1", "u1", json!({})).await;
    browser.goto(&web_client_origin().await).await;
    let got = browser
        .run(
            "const s = document.createElement('script'); s.src = '/tus.min.js';
             s.onerror = () => done({error: 'tus.min.js did not load'});
             s.onload = () => {
               const bytes = new Uint8Array(300000);
               for (let i = 0; i < bytes.length; i++) bytes[i] = (i % 251) ^ 0x5a;
               const upload = new tus.Upload(new Blob([bytes]), {
                 endpoint: arguments[0], chunkSize: 100000, retryDelays: [],
                 metadata: {filename: 'web.bin'},
                 onError: e => done({error: String(e)}),
                 onSuccess: p => done({url: upload.url,
                   media: p.lastResponse.getHeader('Satchel-Media-Id')}),
               });
               upload.start();
             };
             document.head.appendChild(s);",
            json!([url]),
        )
        .await;
    assert_eq!(got["url"], url, "{got}");
    let id = got["media"].as_str().unwrap_or_else(|| panic!("{got}"));
    let media: Value = app.media(id).await.json().await.unwrap();
    assert_eq!(media["sha256"], sha256_hex(&crate::tus::blob(300_000)));
    assert_eq!(media["filename"], "web.bin");
}

/// Opens `link` in the tab and waits for its media element to have metadata. Polled with
/// one synchronous script at a time: the page is sandboxed (no timers of its own run).
async fn plays(browser: &Browser, link: &str) -> Value {
    browser.goto(link).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = browser
            .command(
                "execute/sync",
                json!({"script": "const m = document.querySelector('video, audio');
                    return m && {tag: m.tagName, readyState: m.readyState, duration: m.duration,
                                 error: m.error && (m.error.code + ' ' + m.error.message)};",
                    "args": []}),
            )
            .await;
        if got["error"].is_string() || got["readyState"].as_u64().unwrap_or(0) >= 1 {
            return got;
        }
        assert!(Instant::now() < deadline, "no metadata in 20 s: {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_video_or_voice_link_opened_in_a_tab_plays_and_an_html_file_is_not_rendered(
    browser: &Browser,
) {
    let app = spawn_app().await;
    let video = app
        .upload_ok("c1", "u1", "clip.mp4", fixture("clip.mp4"))
        .await;
    let voice = app
        .upload_ok("c1", "u1", "v.ogg", fixture("voice.ogg"))
        .await;
    let (video, voice) = (
        video["id"].as_str().unwrap().to_owned(),
        voice["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(app.wait_processed(&video).await["status"], "ready");
    assert_eq!(app.wait_processed(&voice).await["status"], "ready");
    for (id, variant, tag) in [(&video, "video", "VIDEO"), (&voice, "voice", "VIDEO")] {
        let link = app.link(id, "u1", variant).await;
        let got = plays(browser, &link).await;
        // Chromium's media document uses a <video> element for audio too.
        assert_eq!(got["error"], Value::Null, "{variant}: {got}");
        assert_eq!(got["tag"], tag, "{variant}: {got}");
        assert!(got["duration"].as_f64().unwrap() > 0.5, "{variant}: {got}");
    }
    // An animated GIF's `animation` (H.264 in MP4) plays as a video, for its 300 ms.
    let gif = app
        .upload_ok("c1", "u1", "anim.gif", fixture("anim.gif"))
        .await;
    let gif = gif["id"].as_str().unwrap();
    assert_eq!(app.wait_processed(gif).await["status"], "ready");
    let got = plays(browser, &app.link(gif, "u1", "animation").await).await;
    assert_eq!(got["error"], Value::Null, "animation: {got}");
    assert_eq!(got["tag"], "VIDEO", "animation: {got}");
    let duration = got["duration"].as_f64().unwrap();
    assert!((duration - 0.3).abs() < 0.05, "animation: {got}");
    // An HTML file is an attachment: the tab does not render it, and no script of it runs.
    let html = app
        .upload_ok(
            "c1",
            "u1",
            "page.html",
            b"<!doctype html><title>rendered</title><script>document.title = 'ran'</script>"
                .to_vec(),
        )
        .await;
    let link = app
        .link(html["id"].as_str().unwrap(), "u1", "original")
        .await;
    browser.goto(&link).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = browser
        .command(
            "execute/sync",
            json!({"script": "return {title: document.title, url: location.href};", "args": []}),
        )
        .await;
    assert_ne!(got["title"], "ran", "a script of the upload ran: {got}");
    assert_ne!(got["title"], "rendered", "the upload was rendered: {got}");
}
