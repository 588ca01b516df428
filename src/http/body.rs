//! An upload's request body as it arrives, raw or multipart: the idle timeout and the cap on
//! its total size apply here, to every byte of it, framing included.

use crate::usecase::ingest::IngestError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// After refusing a body, read and discard up to this much more, so the client gets to read
/// the answer instead of a connection reset.
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: Duration = Duration::from_secs(5);

/// A body that fails once it is over `cap` bytes or sends nothing for `idle`; after its first
/// error it ends.
pub struct Guarded<S> {
    inner: S,
    received: u64,
    cap: u64,
    /// What a refusal names as the limit (`max_upload_bytes`), which `cap` may exceed by the
    /// framing allowed around a file.
    limit: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    failed: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, cap: u64, limit: u64, idle: Duration) -> Self {
        Self {
            inner,
            received: 0,
            cap,
            limit,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            failed: false,
        }
    }
}

impl<S, E> Guarded<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    /// Reads and drops what the client still sends, within [`LINGER_BYTES`] and
    /// [`LINGER_TIME`]: called before answering a refusal.
    pub async fn linger(&mut self) {
        let mut discarded = 0u64;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(chunk)) = self.inner.next().await {
                discarded += chunk.len() as u64;
                if discarded > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    }
}

impl<S, E> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    type Item = Result<Bytes, IngestError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let failure = match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received += chunk.len() as u64;
                if this.received <= this.cap {
                    this.timer.as_mut().reset(Instant::now() + this.idle);
                    return Poll::Ready(Some(Ok(chunk)));
                }
                IngestError::TooLarge { limit: this.limit }
            }
            Poll::Ready(Some(Err(e))) => IngestError::Body(e.to_string()),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => IngestError::Idle(this.idle),
                Poll::Pending => return Poll::Pending,
            },
        };
        this.failed = true;
        Poll::Ready(Some(Err(failure)))
    }
}
