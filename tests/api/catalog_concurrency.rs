//! Requests that race each other, on whichever catalog the run is configured with: SQLite by
//! default, PostgreSQL with `SATCHEL_TEST_BACKEND=real`. Several processes behind one
//! PostgreSQL see the same races between their connections.

use crate::helpers::*;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use satchel::catalog::{Catalog, ChatRecord, Inserted, NewMedia, SqlCatalog};
use satchel::domain::{ChatId, Kind, Media, MediaId, MediaMetadata, Status, UserId};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

async fn members(app: &TestApp, chat: &str) -> Vec<String> {
    let r = app
        .api(Method::GET, &format!("/v1/chats/{chat}/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    serde_json::from_value(body["members"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_uploads_racing_with_one_idempotency_key_store_one_media() {
    let app = spawn_app().await;
    app.add_member("c", "u").await;
    let body = b"the same bytes, sent twenty times at once".to_vec();
    let responses = join_all((0..20).map(|_| {
        app.upload_request("c", "u", "note.bin")
            .header("Idempotency-Key", "k-1")
            .body(body.clone())
            .send()
    }))
    .await;
    let mut created = 0;
    let mut ids = HashSet::new();
    for r in responses {
        let r = r.unwrap();
        match r.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}: {:?}", r.text().await),
        }
        let media: Value = r.json().await.unwrap();
        ids.insert(media["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one upload is new");
    assert_eq!(ids.len(), 1, "every answer names the same media: {ids:?}");
    assert_eq!(app.stored_originals(), 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(app.media(&id).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_member_replacements_leave_one_whole_set() {
    let app = spawn_app().await;
    let sets: Vec<Vec<String>> = (0..10)
        .map(|i| (0..8).map(|j| format!("s{i}-u{j}")).collect())
        .collect();
    // Several rounds, each starting from the previous winner, to give interleavings a chance.
    for _ in 0..5 {
        let responses = join_all(sets.iter().map(|set| {
            app.api(Method::PUT, "/v1/chats/c/members")
                .json(&json!({ "members": set }))
                .send()
        }))
        .await;
        for r in responses {
            assert_eq!(r.unwrap().status(), StatusCode::NO_CONTENT);
        }
        let now = members(&app, "c").await;
        assert!(
            sets.contains(&now),
            "the members are a mix of several replacements: {now:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_adds_and_removes_are_idempotent() {
    let app = spawn_app().await;
    let adds = (0..10)
        .map(|_| "same".to_owned())
        .chain((0..10).map(|i| format!("u{i}")));
    let responses = join_all(adds.map(|user| {
        app.api(Method::PUT, &format!("/v1/chats/c/members/{user}"))
            .send()
    }))
    .await;
    for r in responses {
        assert_eq!(r.unwrap().status(), StatusCode::NO_CONTENT);
    }
    let mut expected: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    expected.insert(0, "same".into());
    assert_eq!(members(&app, "c").await, expected);

    let responses =
        join_all((0..10).map(|_| app.api(Method::DELETE, "/v1/chats/c/members/same").send())).await;
    for r in responses {
        assert_eq!(r.unwrap().status(), StatusCode::NO_CONTENT);
    }
    expected.remove(0);
    assert_eq!(members(&app, "c").await, expected);
}

fn processing_image() -> Media {
    Media {
        id: MediaId::generate(),
        chat_id: ChatId::parse("c").unwrap(),
        uploader: UserId::parse("u").unwrap(),
        filename: "p.jpg".into(),
        kind: Kind::Image,
        mime: "image/jpeg".into(),
        size: 1,
        sha256: "00".into(),
        uploaded_sha256: "00".into(),
        created_at: time::OffsetDateTime::now_utc(),
        expires_at: None,
        status: Status::Processing,
        error: None,
        metadata: MediaMetadata::default(),
        placeholder: None,
        variants: BTreeMap::new(),
    }
}

/// Two catalog handles on one database, as two satchel processes would have: PostgreSQL
/// in the real-backend run, else one SQLite file.
/// Two catalogs on one database, as two processes would open it; the third value keeps the
/// database alive.
async fn two_catalogs() -> (
    Arc<dyn Catalog>,
    Arc<dyn Catalog>,
    (tempfile::TempDir, Option<TestDatabase>),
) {
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = match real_backend() {
        true => {
            let db = TestDatabase::create().await;
            (db.url.clone(), Some(db))
        }
        false => {
            let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
            (url, None)
        }
    };
    let a = SqlCatalog::open(&url, 4, Vec::new()).await.unwrap();
    let b = SqlCatalog::open(&url, 4, Vec::new()).await.unwrap();
    (Arc::new(a), Arc::new(b), (dir, db))
}

async fn queue_images(catalog: &dyn Catalog, n: usize) {
    catalog
        .ensure_chat(
            &ChatId::parse("c").unwrap(),
            &ChatRecord {
                bucket: "chat-c".into(),
                generation: "g1".into(),
            },
        )
        .await
        .unwrap();
    for _ in 0..n {
        let new = NewMedia {
            media: processing_image(),
            bucket: "chat-c".into(),
            generation: "g1".into(),
            idempotency_key: None,
            quota: Default::default(),
        };
        assert!(matches!(catalog.insert_media(new).await, Ok(Inserted::New)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_never_lease_the_same_job() {
    let (a, b, _keep) = two_catalogs().await;
    const JOBS: usize = 60;
    queue_images(a.as_ref(), JOBS).await;

    let claimers = [(&a, "node-a"), (&b, "node-b")]
        .into_iter()
        .cycle()
        .take(8)
        .map(|(catalog, node)| {
            let catalog = Arc::clone(catalog);
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = catalog
                    .claim_job(&[Kind::Image], Duration::from_secs(60), node, None)
                    .await
                    .unwrap()
                {
                    assert_eq!(job.attempt, 1);
                    claimed.push(job.media_id);
                }
                claimed
            })
        });
    let claimed: Vec<MediaId> = join_all(claimers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let distinct: HashSet<_> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a job was handed out twice");
    assert_eq!(claimed.len(), JOBS, "every job was handed out");
    assert_eq!(b.queue_depth().await.unwrap(), JOBS as u64);
}

#[tokio::test]
async fn a_restarting_node_releases_its_own_leases_and_no_one_elses() {
    let (a, b, _keep) = two_catalogs().await;
    queue_images(a.as_ref(), 2).await;
    let lease = Duration::from_secs(60);
    let held_by_a = a
        .claim_job(&[Kind::Image], lease, "node-a", None)
        .await
        .unwrap();
    let held_by_b = b
        .claim_job(&[Kind::Image], lease, "node-b", None)
        .await
        .unwrap();
    let (held_by_a, held_by_b) = (held_by_a.unwrap(), held_by_b.unwrap());

    // node-b starts again: only the job it held is runnable again, and only once.
    assert_eq!(b.release_leases("node-b").await.unwrap(), 1);
    let again = b
        .claim_job(&[Kind::Image], lease, "node-b", None)
        .await
        .unwrap();
    let again = again.expect("node-b's job is runnable again");
    assert_eq!(again.media_id, held_by_b.media_id);
    assert_eq!(again.attempt, 2);
    assert!(
        b.claim_job(&[Kind::Image], lease, "node-b", None)
            .await
            .unwrap()
            .is_none(),
        "node-a's lease was released by node-b"
    );

    assert_eq!(a.release_leases("node-a").await.unwrap(), 1);
    let again = a
        .claim_job(&[Kind::Image], lease, "node-a", None)
        .await
        .unwrap();
    assert_eq!(again.unwrap().media_id, held_by_a.media_id);
}
