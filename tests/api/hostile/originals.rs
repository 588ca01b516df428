//! Originals lose their metadata as they stream in (`original_metadata`), so the filter reads
//! whatever an attacker sends: a JPEG segment that claims more than the file holds, a PNG
//! metadata chunk that claims 100 MB and brings 64 MiB, files cut anywhere. Each upload is
//! taken, with what there is, and the server's peak RSS stays flat.

use super::peak_rss_kib;
use crate::helpers::{fixture, TOKEN};
use crate::processes::start_node;
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;

const MIB: usize = 1 << 20;
/// What the server may grow by (its own buffers, the runtime), far below the bodies sent.
const GROWTH_KIB: u64 = 32 * 1024;

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    c.extend_from_slice(&crc.finalize().to_be_bytes());
    c
}

#[tokio::test]
async fn hostile_metadata_lengths_and_truncations_are_stored_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("SATCHEL_API_TOKENS", TOKEN), ("SATCHEL_WORKERS", "1")];
    let node = start_node(&["serve"], dir.path(), env).await;
    node.add_member("c1", "u1").await;
    let client = reqwest::Client::new();
    let upload = |body: reqwest::Body| {
        client
            .post(format!("{}/v1/chats/c1/media?user=u1", node.base))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    let pid = node.child.id();
    let before = peak_rss_kib(pid);

    // A PNG whose eXIf claims 100 MB, followed by 64 MiB in 64 KiB chunks.
    let mut head = b"\x89PNG\r\n\x1a\n".to_vec();
    head.extend_from_slice(&png_chunk(
        b"IHDR",
        &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0],
    ));
    let kept = head.len();
    head.extend_from_slice(&100_000_000u32.to_be_bytes());
    head.extend_from_slice(b"eXIfII*\0");
    let filler = Bytes::from(vec![0x47u8; 64 * 1024]);
    let chunks = std::iter::once(Bytes::from(head))
        .chain(std::iter::repeat_n(filler, 64 * MIB / (64 * 1024)))
        .map(Ok::<_, std::io::Error>);
    let r = upload(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media: Value = r.json().await.unwrap();
    assert_eq!(media["kind"], "image");
    assert_eq!(
        media["size"], kept,
        "the chunk that never ended is not stored"
    );

    // A JPEG whose APP1 claims 64 KiB and brings 100 bytes.
    let mut jpeg = b"\xff\xd8\xff\xe1\xff\xffExif\0\0MM\0*".to_vec();
    jpeg.extend_from_slice(&[0x47; 100]);
    let r = upload(jpeg.into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let media: Value = r.json().await.unwrap();
    assert_eq!(media["size"], 2, "SOI only");

    // Every fixture cut in half, and after its first kilobyte.
    for name in ["photo-gps.jpg", "photo-gps.png", "photo-gps.webp"] {
        let full = fixture(name);
        for cut in [full.len() / 2, 1024] {
            let r = upload(full[..cut].to_vec().into()).await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED, "{name} cut at {cut}");
            let media: Value = r.json().await.unwrap();
            assert!(media["size"].as_u64().unwrap() <= cut as u64, "{media}");
        }
    }

    let after = peak_rss_kib(pid);
    eprintln!("peak RSS {before} KiB before, {after} KiB after");
    assert!(
        after - before < GROWTH_KIB,
        "the server's peak RSS grew from {before} KiB to {after} KiB"
    );
}
