//! The timers on a connection's bytes: [`Heads`] on its reads (a request's head within
//! `header_read_timeout_seconds`, [`KEEP_ALIVE`] idle between requests), its [`Stall`] on its
//! writes (`download_stall_seconds`), and [`Serving`], which tells them whether a request is
//! being served.

use super::Limits;
use crate::metrics::Metrics;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a kept-alive connection may sit idle between requests. Longer than the idle
/// timeout of common load balancers and proxies (60 s), so that one of them never sends a
/// request into a connection satchel is closing; hyper's own header timer would close idle
/// connections after `header_read_timeout_seconds`, racing every client that reuses one.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// The stall timer of a connection's writes: they fail once one has made no progress for
/// `limit`, so a client that reads nothing cannot hold a response (its file, its task) open.
struct Stall {
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    fired: bool,
    metrics: Arc<Metrics>,
}

impl Stall {
    fn new(limit: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            fired: false,
            metrics,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending if self.fired => Poll::Ready(Err(Self::stalled())),
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    self.timer.as_mut().reset(Instant::now() + self.limit);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.fired = true;
                        self.metrics.connection_closed("download_stall");
                        tracing::debug!(limit = ?self.limit, "the client read nothing: dropped");
                        Poll::Ready(Err(Self::stalled()))
                    }
                }
            }
            ready => {
                self.armed = false;
                ready
            }
        }
    }

    fn stalled() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for download_stall_seconds",
        )
    }
}

/// Whether a connection is serving a request: from the moment its headers are whole (the
/// service is called) until its response's body is done with (dropped by hyper).
#[derive(Clone, Default)]
pub(super) struct Serving(Arc<std::sync::atomic::AtomicBool>);

impl Serving {
    fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn set(&self, serving: bool) {
        self.0.store(serving, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Set on a response's body: the request is over when hyper drops it.
pub(super) struct Served(pub(super) Serving);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// A response body that ends its connection's [`Serving`] when it is dropped.
pub(super) struct Tracked {
    pub(super) body: axum::body::Body,
    pub(super) _served: Served,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The request-head and keep-alive timers of a connection, on its reads. Waiting for a head
/// (from the start, or from the first byte of a later request) lasts `header_read_timeout`
/// at most: then reads fail and hyper closes the connection. Idle between requests (no byte
/// of the next one yet) lasts [`KEEP_ALIVE`]: then reads end, a graceful close. Its writes
/// are watched by a [`Stall`].
pub(super) struct Heads<Io> {
    io: Io,
    stall: Stall,
    serving: Serving,
    header_timeout: Duration,
    /// Running while a head is awaited.
    head: Option<Pin<Box<Sleep>>>,
    /// Running while the connection is idle between requests.
    idle: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

impl<Io> Heads<Io> {
    pub(super) fn new(io: Io, serving: Serving, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            io,
            stall: Stall::new(limits.download_stall, metrics.clone()),
            serving,
            header_timeout: limits.header_read_timeout,
            head: Some(Box::pin(tokio::time::sleep(limits.header_read_timeout))),
            idle: None,
            metrics,
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Heads<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let serving = this.serving.get();
        if serving {
            // The head arrived (and anything read now is its body); idle it is not.
            this.head = None;
            this.idle = None;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.idle = None;
                if !serving && this.head.is_none() {
                    // The first byte of the next request: its head has this long.
                    this.head = Some(Box::pin(tokio::time::sleep(this.header_timeout)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if !serving => {
                if let Some(head) = &mut this.head {
                    if head.as_mut().poll(cx).is_ready() {
                        this.metrics.connection_closed("header_timeout");
                        tracing::debug!("no whole request headers in time: closed");
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no whole request headers within header_read_timeout_seconds",
                        )));
                    }
                    return Poll::Pending;
                }
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(KEEP_ALIVE)));
                if idle.as_mut().poll(cx).is_ready() {
                    // End of stream between requests: hyper closes the connection quietly.
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Heads<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stall.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.stall.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.stall.watch(cx, polled)
    }
}
