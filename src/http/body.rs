//! An upload's request body as it arrives, raw or multipart: the idle timeout, the minimum
//! rate and the cap on its total size apply here, to every byte of it, framing included.

use crate::config::MinRate;
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

/// A body that fails once it is over `cap` bytes, sends nothing for `idle`, or (with a
/// [`MinRate`]) sends less than the rate asks over a window; after its first error it ends.
pub struct Guarded<S> {
    inner: S,
    received: u64,
    cap: u64,
    /// What a refusal names as the limit (`max_upload_bytes`), which `cap` may exceed by the
    /// framing allowed around a file.
    limit: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    rate: Option<Pace>,
    failed: bool,
}

/// The minimum rate's bookkeeping. The clock of a window runs only while the body is awaited
/// (the consumer polled and nothing had arrived): time the server spends elsewhere, storing a
/// chunk under backpressure, is not charged to the client.
struct Pace {
    rate: MinRate,
    /// What one window must bring.
    need: u64,
    /// Bytes received in the current window.
    got: u64,
    /// Time awaited in the current window before the current wait.
    waited: Duration,
    /// When the current wait began, if the body is being awaited.
    since: Option<Instant>,
    /// The end of the current window, if the wait goes on.
    timer: Pin<Box<Sleep>>,
}

impl Pace {
    fn new(rate: MinRate) -> Self {
        Self {
            rate,
            need: rate
                .bytes_per_second
                .saturating_mul(rate.window.as_secs().max(1)),
            got: 0,
            waited: Duration::ZERO,
            since: None,
            timer: Box::pin(tokio::time::sleep(rate.window)),
        }
    }

    fn too_slow(&self) -> IngestError {
        IngestError::TooSlow {
            bytes_per_second: self.rate.bytes_per_second,
            window: self.rate.window,
        }
    }

    /// A chunk of `len` bytes arrived: it counts in the window it ends.
    fn arrived(&mut self, len: usize) -> Result<(), IngestError> {
        if let Some(since) = self.since.take() {
            self.waited += since.elapsed();
        }
        self.got = self.got.saturating_add(len as u64);
        if self.waited >= self.rate.window {
            if self.got < self.need {
                return Err(self.too_slow());
            }
            self.got = 0;
            self.waited = Duration::ZERO;
        }
        Ok(())
    }

    /// Nothing has arrived: wait until the window's awaited time runs out.
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<IngestError> {
        loop {
            if self.since.is_none() {
                let now = Instant::now();
                self.since = Some(now);
                let left = self.rate.window.saturating_sub(self.waited);
                self.timer.as_mut().reset(now + left);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // A whole window awaited: it either brought enough, and the next one begins now,
            // or the upload is too slow.
            if self.got < self.need {
                return Poll::Ready(self.too_slow());
            }
            self.got = 0;
            self.waited = Duration::ZERO;
            self.since = None;
        }
    }
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
            rate: None,
            failed: false,
        }
    }

    /// Also fails a body that averages less than `rate` over a window (`None`: no minimum).
    pub fn with_min_rate(mut self, rate: Option<MinRate>) -> Self {
        self.rate = rate.map(Pace::new);
        self
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
                let paced = match &mut this.rate {
                    Some(pace) => pace.arrived(chunk.len()),
                    None => Ok(()),
                };
                match paced {
                    Err(slow) => slow,
                    Ok(()) if this.received <= this.cap => {
                        this.timer.as_mut().reset(Instant::now() + this.idle);
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    Ok(()) => IngestError::TooLarge { limit: this.limit },
                }
            }
            Poll::Ready(Some(Err(e))) => IngestError::Body(e.to_string()),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => IngestError::Idle(this.idle),
                Poll::Pending => match this.rate.as_mut().map(|pace| pace.poll_waiting(cx)) {
                    Some(Poll::Ready(slow)) => slow,
                    None | Some(Poll::Pending) => return Poll::Pending,
                },
            },
        };
        this.failed = true;
        Poll::Ready(Some(Err(failure)))
    }
}
