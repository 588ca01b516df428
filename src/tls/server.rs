//! satchel's own HTTPS: `tls_cert_file` (the chain, PEM) and `tls_key_file` (its key, PEM),
//! served with rustls by [`crate::http::conn::serve`] (the same limits and graceful shutdown as
//! plain HTTP).
//!
//! [`Certificates::reload`] (on SIGHUP) swaps the certificate for the handshakes that follow;
//! connections already established keep theirs and go on. A file that cannot be read or does
//! not match its key leaves the current certificate in place.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::http::conn::{Slots, Slotted};

/// A client that has not finished its handshake after this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const HANDSHAKES_IN_FLIGHT: usize = 256;

/// The server's certificate and key, as last read from their files.
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Arc::new(read(cert_file, key_file)?)),
        }))
    }

    /// Reads both files again; on success new handshakes get the new certificate, on failure
    /// the current one stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = read(&self.cert_file, &self.key_file)?;
        *self.current.write().expect("not poisoned") = Arc::new(fresh);
        Ok(())
    }

    /// A rustls server configuration that always presents the current certificate.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .context("rustls has no safe protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // axum is built with HTTP/1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The files only: nothing of the key reaches a log.
impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").clone())
    }
}

fn read(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = std::fs::read(cert_file)
        .with_context(|| format!("tls_cert_file: cannot read {}", cert_file.display()))?;
    let chain = super::certificates(&chain)
        .with_context(|| format!("tls_cert_file: {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("tls_key_file: no PEM private key in {}", key_file.display()))?;
    let key = super::provider()
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("tls_key_file: {} is not a usable key", key_file.display()))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().with_context(|| {
        format!(
            "tls_key_file {} is not the key of tls_cert_file {}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok(certified)
}

type Accepted = (Slotted<TlsStream<TcpStream>>, SocketAddr);

/// A listener whose connections are TLS streams: a task accepts TCP connections and runs each
/// handshake in a task of its own (a slow client holds up no other), handing the finished
/// ones to the server. Each connection takes one of `slots` before it is accepted and holds
/// it through its handshake and for as long as it is open. Dropped, it stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<Accepted>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// No limit on open connections.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        Self::with_slots(listener, acceptor, Slots::unbounded())
    }

    pub fn with_slots(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        slots: Slots,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (done, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept(listener, acceptor, slots, done));
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    connections: Slots,
    done: mpsc::Sender<Accepted>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    loop {
        let connection = connections.take().await;
        let Ok(slot) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: as axum's own listener does, pause.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, done) = (acceptor.clone(), done.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(slot);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = done.send((Slotted::new(stream, connection), peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Slotted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ends only when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Re-reads the certificates on every SIGHUP, for as long as the returned task runs. The
/// handler is installed before this returns, so a SIGHUP sent once the server answers never
/// takes the default action (ending the process).
pub fn reload_on_hangup(
    certificates: Arc<Certificates>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match certificates.reload() {
                Ok(()) => tracing::info!(
                    cert = %certificates.cert_file.display(),
                    "SIGHUP: TLS certificate re-read; new connections get it"
                ),
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "SIGHUP: cannot re-read the TLS certificate; keeping the current one"
                ),
            }
        }
    }))
}
