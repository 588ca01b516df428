//! Streaming an upload's file into storage: bounded buffers, SHA-256 and the size limit
//! computed as bytes pass, the first bytes kept for sniffing. Nothing here holds a whole body.
//! The transport's own bounds (the idle timeout, the cap on the whole request, lingering after
//! a refusal) are the HTTP edge's: [`crate::http::body`].

use crate::catalog::QuotaScope;
use crate::domain::sniff::SNIFF_BYTES;
use crate::storage::{PutSink, StorageError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub struct Ingested {
    pub size: u64,
    pub sha256: [u8; 32],
    /// The first bytes, for [`crate::domain::sniff`].
    pub head: Vec<u8>,
}

/// Why a body was not taken.
#[derive(Debug)]
pub enum IngestError {
    /// Over `limit` (`max_upload_bytes`): the file, or the whole request with its framing.
    TooLarge {
        limit: u64,
    },
    /// Over what was left of the chat's or the uploader's storage quota.
    OverQuota(QuotaScope),
    /// The client stopped sending (disconnect), or its framing is broken.
    Body(String),
    /// No bytes arrived for this long.
    Idle(Duration),
    /// Less than `bytes_per_second` on average over a `window` of waiting for the body.
    TooSlow {
        bytes_per_second: u64,
        window: Duration,
    },
    Storage(StorageError),
}

/// What is left of the tightest storage quota when an upload begins, and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub left: u64,
    pub scope: QuotaScope,
}

/// Streams `body` into `sink`, refusing it once it is over `limit` bytes or over `room`.
pub async fn ingest<S>(
    body: S,
    sink: &mut dyn PutSink,
    limit: u64,
    room: Option<Room>,
) -> Result<Ingested, IngestError>
where
    S: Stream<Item = Result<Bytes, IngestError>>,
{
    let mut body = std::pin::pin!(body);
    let mut size = 0u64;
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(IngestError::TooLarge { limit });
        }
        if let Some(room) = room.filter(|r| size > r.left) {
            return Err(IngestError::OverQuota(room.scope));
        }
        hasher.update(&chunk);
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        sink.write(chunk).await.map_err(IngestError::Storage)?;
    }
    Ok(Ingested {
        size,
        sha256: hasher.finalize().into(),
        head,
    })
}
