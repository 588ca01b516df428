//! Connections, served here rather than by `axum::serve`, which cannot bound the time a client
//! takes over its headers: every connection holds one of `max_connections` slots while it is
//! open, is closed when a request's headers take longer than `header_read_timeout_seconds`
//! (counted from the connection's start, or from the first byte of a later request on it), is
//! closed after [`KEEP_ALIVE`] idle between requests, and is dropped when the client reads
//! nothing of a response for `download_stall_seconds`.
//! Each request carries the peer's address (`ConnectInfo<PeerAddr>`). On shutdown, accepting
//! stops, every connection finishes the request it is serving (idle ones close at once), and
//! [`serve`] returns once the last one has.

mod timers;

use super::PeerAddr;
use crate::metrics::Metrics;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
pub use timers::KEEP_ALIVE;
use timers::{Heads, Served, Serving, Tracked};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
