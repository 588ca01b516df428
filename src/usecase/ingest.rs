//! Streaming an upload's file into storage: bounded buffers, SHA-256 and the size limit
//! computed as bytes pass, the first bytes kept for sniffing. An image original goes through
//! its [`Filter`] (`original_metadata`) on the way: what is stored, hashed and counted against
//! the quota is what comes out of it, while the size limit and the digest the client may name
//! are the body's as received. Nothing here holds a whole body.
//! The transport's own bounds (the idle timeout, the cap on the whole request, lingering after
//! a refusal) are the HTTP edge's: [`crate::http::body`].

use crate::catalog::QuotaScope;
use crate::domain::sniff::{sniff, SNIFF_BYTES};
use crate::storage::{PutSink, StorageError};
use crate::strip::{Filter, OriginalMetadata};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub struct Ingested {
    /// What was stored: its size and SHA-256.
    pub size: u64,
    pub sha256: [u8; 32],
    /// The body as received: its size and SHA-256 (what `Content-Digest` names).
    pub uploaded_size: u64,
    pub uploaded_sha256: [u8; 32],
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

/// Streams `body` into `sink`, refusing it once it is over `limit` bytes as received or,
/// as stored, over `room`. Image originals lose metadata on the way as `policy` says.
pub async fn ingest<S>(
    body: S,
    sink: &mut dyn PutSink,
    limit: u64,
    room: Option<Room>,
    policy: OriginalMetadata,
) -> Result<Ingested, IngestError>
where
    S: Stream<Item = Result<Bytes, IngestError>>,
{
    let mut body = std::pin::pin!(body);
    let mut received = Received::default();
    let mut stored = Stored {
        room,
        ..Stored::default()
    };
    // Until the head is whole nothing is stored: it decides the filter.
    let mut filter: Option<Option<Filter>> = None;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        received.size += chunk.len() as u64;
        if received.size > limit {
            return Err(IngestError::TooLarge { limit });
        }
        received.hasher.update(&chunk);
        let rest = match &mut filter {
            Some(_) => chunk,
            None => {
                let take = (SNIFF_BYTES - received.head.len()).min(chunk.len());
                received.head.extend_from_slice(&chunk[..take]);
                if received.head.len() < SNIFF_BYTES {
                    continue;
                }
                let mut chosen = Filter::new(policy, &sniff(&received.head));
                let head = Bytes::copy_from_slice(&received.head);
                stored.pass(chosen.as_mut(), head, &mut out, sink).await?;
                filter = Some(chosen);
                chunk.slice(take..)
            }
        };
        if let Some(filter) = &mut filter {
            stored.pass(filter.as_mut(), rest, &mut out, sink).await?;
        }
    }
    let mut filter = match filter {
        Some(filter) => filter,
        None => {
            // A body shorter than the head.
            let mut chosen = Filter::new(policy, &sniff(&received.head));
            let head = Bytes::copy_from_slice(&received.head);
            stored.pass(chosen.as_mut(), head, &mut out, sink).await?;
            chosen
        }
    };
    if let Some(filter) = &mut filter {
        filter.finish(&mut out);
        stored.write(&mut out, sink).await?;
    }
    Ok(Ingested {
        size: stored.size,
        sha256: stored.hasher.finalize().into(),
        uploaded_size: received.size,
        uploaded_sha256: received.hasher.finalize().into(),
        head: received.head,
    })
}

#[derive(Default)]
struct Received {
    size: u64,
    hasher: Sha256,
    head: Vec<u8>,
}

/// What goes into the sink: counted against the quota's room and hashed.
#[derive(Default)]
struct Stored {
    size: u64,
    hasher: Sha256,
    room: Option<Room>,
}

impl Stored {
    /// Stores `bytes` through `filter` (as they are without one); `out` is the filter's
    /// output buffer, empty between calls.
    async fn pass(
        &mut self,
        filter: Option<&mut Filter>,
        bytes: Bytes,
        out: &mut Vec<u8>,
        sink: &mut dyn PutSink,
    ) -> Result<(), IngestError> {
        match filter {
            None => self.store(bytes, sink).await,
            Some(filter) => {
                filter.push(&bytes, out);
                self.write(out, sink).await
            }
        }
    }

    async fn write(
        &mut self,
        out: &mut Vec<u8>,
        sink: &mut dyn PutSink,
    ) -> Result<(), IngestError> {
        if out.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::take(out));
        self.store(bytes, sink).await
    }

    async fn store(&mut self, bytes: Bytes, sink: &mut dyn PutSink) -> Result<(), IngestError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.size += bytes.len() as u64;
        if let Some(room) = self.room.filter(|r| self.size > r.left) {
            return Err(IngestError::OverQuota(room.scope));
        }
        self.hasher.update(&bytes);
        sink.write(bytes).await.map_err(IngestError::Storage)
    }
}
