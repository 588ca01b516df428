use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["storage"], app.storage_name());
    let catalog = if real_backend() { "postgres" } else { "sqlite" };
    assert_eq!(body["catalog"], catalog);
}

#[tokio::test]
async fn readiness_names_storage_when_it_fails() {
    let app = match real_backend() {
        // Nothing listens on port 1: the store is as good as down.
        true => spawn_app_with(&[("SATCHEL_S3_ENDPOINT", "http://127.0.0.1:1")]).await,
        false => {
            let app = spawn_app().await;
            // Take the store's scratch directory away: storage can no longer write.
            std::fs::remove_dir_all(app.dir.path().join("tmp")).unwrap();
            app
        }
    };
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
}

/// Finding 11: `/readyz` is cheap. A storm of calls costs one round of backend checks a
/// second, and an outage still shows within about a second.
#[tokio::test]
async fn a_readyz_storm_costs_one_round_of_checks_a_second_and_outages_still_show() {
    let app = spawn_app_with(&FILESYSTEM_STORE).await;
    let rounds = |metrics: String| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("satchel_readiness_checks_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let metrics = || async {
        let r = app.client.get(app.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    };
    let before = rounds(metrics().await);
    let started = std::time::Instant::now();
    let calls = (0..400).map(|_| async {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    });
    futures_util::future::join_all(calls).await;
    let seconds = started.elapsed().as_secs() + 1;
    let spent = rounds(metrics().await) - before;
    assert!(
        (1..=seconds + 1).contains(&spent),
        "{spent} rounds of checks for 400 calls in {seconds} s"
    );

    std::fs::remove_dir_all(app.dir.path().join("tmp")).unwrap();
    let r = app.readyz_becomes(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
}

#[tokio::test]
async fn metrics_count_uploads_jobs_and_links() {
    let app = spawn_app().await;
    let media = app
        .upload_ok("c1", "u1", "p.jpg", fixture("photo.jpg"))
        .await;
    let id = media["id"].as_str().unwrap();
    app.wait_processed(id).await;
    let link = app.link(id, "u1", "thumbnail").await;
    app.client.get(&link).send().await.unwrap();
    let expected = [
        "satchel_uploads_total{kind=\"image\",outcome=\"accepted\"} 1",
        "satchel_jobs_total{kind=\"image\",outcome=\"ready\"} 1",
        "satchel_job_seconds_bucket",
        "satchel_queue_depth 0",
        "satchel_link_checks_total{outcome=\"served\"} 1",
        "satchel_links_issued_total 1",
    ];
    // A job is counted just after its media turns ready in the catalog, so a client that saw
    // `ready` may read the metrics a moment before the count.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = crate::processes::metrics(&app.client, &app.url("")).await;
        let missing: Vec<_> = expected.iter().filter(|e| !text.contains(*e)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/chats/{chat}/members/{user}", "put"),
        ("/v1/chats/{chat}/members/{user}", "delete"),
        ("/v1/chats/{chat}/members", "put"),
        ("/v1/chats/{chat}/members", "get"),
        ("/v1/chats/{chat}", "delete"),
        ("/v1/chats/{chat}/media", "post"),
        ("/v1/media/{id}", "get"),
        ("/v1/media/{id}", "delete"),
        ("/v1/media/{id}/links", "post"),
        ("/v1/files/{id}/{variant}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    let media = &doc["components"]["schemas"]["Media"]["properties"];
    for field in [
        "id",
        "chat_id",
        "kind",
        "status",
        "metadata",
        "placeholder",
        "variants",
    ] {
        assert!(media.get(field).is_some(), "Media.{field}");
    }
}

/// The background driver: a task whose step fails is logged, counted under its name and run
/// again after a backoff, not given up. Here the outbox relay of a node whose broker is gone.
#[tokio::test]
async fn a_failing_background_task_is_retried_and_counted() {
    // Nothing listens on port 1: every publish attempt fails.
    let app = spawn_app_with(&[("SATCHEL_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")]).await;
    app.upload_ok("c1", "u1", "p.png", flat_png(8)).await;
    let failures = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("satchel_background_errors_total{task=\"outbox_relay\"} "))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = crate::processes::metrics(&app.client, &app.url("")).await;
        if failures(&text) >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay was not retried: {}",
            failures(&text)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The job is still waiting in the outbox, for when the broker comes back.
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("satchel_queue_depth 1"));
}

#[tokio::test]
async fn an_unknown_route_says_so() {
    let app = spawn_app().await;
    for path in ["/nope", "/v1/nope", "/v1/media/x/y/z"] {
        let r = app.api(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
        assert_eq!(body["error"]["message"], "no such route", "{path}: {body}");
    }
    let body: Value = app.media("nope").await.json().await.unwrap();
    assert_eq!(body["error"]["message"], "no such media", "{body}");
}

#[tokio::test]
async fn the_openapi_document_has_both_upload_bodies_and_the_webhook() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let body = &doc["paths"]["/v1/chats/{chat}/media"]["post"]["requestBody"]["content"];
    assert!(body["application/octet-stream"].is_object(), "{body}");
    let form = &body["multipart/form-data"]["schema"];
    let form = match form["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => form,
    };
    assert_eq!(form["properties"]["file"]["format"], "binary", "{form}");

    let webhooks = doc["webhooks"].as_object().expect("a webhooks section");
    let post = &webhooks.values().next().expect("one webhook")["post"];
    let header = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Satchel-Signature")
        .unwrap_or_else(|| panic!("no Satchel-Signature in {post}"));
    assert_eq!(header["in"], "header");
    // API.md v1.1: a timestamp, then one signature per webhook secret.
    assert_eq!(
        header["schema"]["pattern"], "^t=[0-9]+(,v1=[0-9a-f]{64})+$",
        "{header}"
    );
    let bodies = &post["requestBody"]["content"]["application/json"]["schema"]["oneOf"];
    let media = &bodies[0]["allOf"];
    assert_eq!(media[0]["$ref"], "#/components/schemas/Media", "{bodies}");
    assert_eq!(
        media[1]["properties"]["event"]["enum"],
        serde_json::json!(["media.ready", "media.failed", "media.erased"])
    );
    assert_eq!(
        media[1]["properties"]["reason"]["enum"],
        serde_json::json!(["unsent", "expired", "chat_erased"])
    );
    assert_eq!(
        bodies[1]["properties"]["event"]["enum"],
        serde_json::json!(["chat.erased"])
    );
    for (path, method) in [
        ("/v1/events/dead", "get"),
        ("/v1/events/dead/retry", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["security"].is_array(),
            "{path}: {}",
            doc["paths"][path]
        );
    }
}
