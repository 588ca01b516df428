//! Connections, served here rather than by `axum::serve`, which cannot bound the time a client
//! takes over its headers: every connection holds one of `max_connections` slots while it is
//! open, is closed when a request's headers take longer than `header_read_timeout_seconds`
//! (counted from the connection's start, or from the first byte of a later request on it), is
//! closed after [`KEEP_ALIVE`] idle between requests, and is dropped when the client reads
//! nothing of a response for `download_stall_seconds`.
//! Each request carries the peer's address (`ConnectInfo<PeerAddr>`). On shutdown, accepting
//! stops, every connection finishes the request it is serving (idle ones close at once), and
//! [`serve`] returns once the last one has.

use super::PeerAddr;
use crate::metrics::Metrics;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long a kept-alive connection may sit idle between requests. Longer than the idle
/// timeout of common load balancers and proxies (60 s), so that one of them never sends a
/// request into a connection satchel is closing; hyper's own header timer would close idle
/// connections after `header_read_timeout_seconds`, racing every client that reuses one.
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// The slow-client limits of every connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub download_stall: Duration,
}

/// The `max_connections` slots of a node. Accepting waits for a free one, so past the limit
/// new connections wait in the kernel's listen backlog (then their SYNs go unanswered and
/// clients retry): nothing is allocated for them here.
#[derive(Clone)]
pub struct Slots {
    free: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
}

impl Slots {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            free: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            metrics: Some(metrics),
        }
    }

    /// No limit, nothing counted (a listener for tests).
    pub fn unbounded() -> Self {
        Self {
            free: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            metrics: None,
        }
    }

    /// A free slot, waiting for one if every slot is taken.
    pub async fn take(&self) -> Slot {
        let permit = match self.free.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(metrics) = &self.metrics {
                    metrics.connection_waits.inc();
                }
                tracing::debug!("max_connections are open: new connections wait");
                self.free
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        }
    }
}

/// One connection's slot, given back when it is dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Option<Arc<Metrics>>,
}

/// A connection's stream with the slot it holds while it lives (counted in
/// `satchel_connections_open`).
pub struct Slotted<Io> {
    io: Io,
    slot: Slot,
}

impl<Io> Slotted<Io> {
    pub fn new(io: Io, slot: Slot) -> Self {
        if let Some(metrics) = &slot.metrics {
            metrics.connections_open.inc();
        }
        Self { io, slot }
    }
}

impl<Io> Drop for Slotted<Io> {
    fn drop(&mut self) {
        if let Some(metrics) = &self.slot.metrics {
            metrics.connections_open.dec();
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Slotted<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Slotted<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Plain TCP, each connection taking a slot before it is accepted.
pub struct Plain {
    listener: TcpListener,
    slots: Slots,
}

impl Plain {
    pub fn new(listener: TcpListener, slots: Slots) -> Self {
        Self { listener, slots }
    }
}

impl axum::serve::Listener for Plain {
    type Io = Slotted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = self.slots.take().await;
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => return (Slotted::new(stream, slot), peer),
                Err(error) => {
                    // Out of descriptors and the like: as axum's own listener does, pause.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

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
struct Serving(Arc<std::sync::atomic::AtomicBool>);

impl Serving {
    fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, serving: bool) {
        self.0.store(serving, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Set on a response's body: the request is over when hyper drops it.
struct Served(Serving);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// A response body that ends its connection's [`Serving`] when it is dropped.
struct Tracked {
    body: axum::body::Body,
    _served: Served,
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
struct Heads<Io> {
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
    fn new(io: Io, serving: Serving, limits: Limits, metrics: Arc<Metrics>) -> Self {
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

/// Serves `router` on every connection `listener` accepts until `shutdown` resolves; then
/// stops accepting and returns when every connection has finished.
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    // The head timer is `Heads`' (hyper's would also close idle connections at the same
    // time); hyper keeps the timer for its other uses.
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(None);
    let (stop, stopping) = tokio::sync::watch::channel(());
    let connections = tokio_util::task::TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (http, router, metrics) = (http.clone(), router.clone(), metrics.clone());
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let serving = Serving::default();
            let io = Heads::new(io, serving.clone(), limits, metrics.clone());
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    serving.set(true);
                    let served = Served(serving.clone());
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(PeerAddr(peer)));
                    let response = tower::ServiceExt::oneshot(router.clone(), request);
                    async move {
                        let response = response.await?;
                        Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                            body,
                            _served: served,
                        }))
                    }
                },
            );
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            match ended {
                Ok(()) => {}
                Err(error) => tracing::debug!(%peer, %error, "connection ended"),
            }
        });
    }
    drop(listener);
    let _ = stop.send(());
    connections.close();
    connections.wait().await;
}
