//! Streaming an upload body into storage: bounded buffers, SHA-256 and the size limit computed
//! as bytes pass, the first bytes kept for sniffing. Nothing here holds a whole body.

use crate::domain::sniff::SNIFF_BYTES;
use crate::storage::{PutSink, StorageError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::fmt::Display;
use std::time::Duration;

/// After refusing an oversized body, read and discard up to this much more, so the client
/// gets to read our 413 instead of a connection reset.
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: Duration = Duration::from_secs(5);

pub struct Ingested {
    pub size: u64,
    pub sha256: [u8; 32],
    /// The first bytes, for [`crate::domain::sniff`].
    pub head: Vec<u8>,
}

#[derive(Debug)]
pub enum IngestError {
    TooLarge,
    /// The client stopped sending (disconnect or a broken body).
    Body(String),
    /// No bytes arrived for the idle timeout.
    Idle,
    Storage(StorageError),
}

pub async fn ingest<S, E>(
    body: S,
    sink: &mut dyn PutSink,
    limit: u64,
    idle: Duration,
) -> Result<Ingested, IngestError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    let mut body = std::pin::pin!(body);
    let mut size = 0u64;
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(IngestError::Idle),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(IngestError::Body(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        size += chunk.len() as u64;
        if size > limit {
            linger(body).await;
            return Err(IngestError::TooLarge);
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

async fn linger<S, E>(mut body: std::pin::Pin<&mut S>)
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut discarded = 0u64;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            discarded += chunk.len() as u64;
            if discarded > LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}
