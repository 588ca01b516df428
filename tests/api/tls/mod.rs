//! TLS on every connection, with certificates made here, at test time, by a CA of the test's
//! own (nothing key-like is committed): satchel's own HTTPS and webhooks over `https://`, on
//! the embedded backends. The connections to real backends (PostgreSQL, RabbitMQ, S3) are in
//! `tls_backends`, run by `scripts/test-real.sh`.

pub mod https;
mod webhook;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority made for one test.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA's certificate to `dir/<file>` and returns its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid now.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        self.issue_with(names, |_| {})
    }

    /// A server certificate for `names` that expired yesterday.
    pub fn issue_expired(&self, names: &[&str]) -> Leaf {
        self.issue_with(names, |params| {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        })
    }

    fn issue_with(&self, names: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The names a local test server's certificate is good for.
pub const LOCAL: &[&str] = &["localhost", "127.0.0.1"];

impl Leaf {
    /// Writes `dir/<name>.crt` and `dir/<name>.key`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// The DER of the certificate, as a client sees it in the handshake.
    pub fn der(&self) -> Vec<u8> {
        satchel::tls::certificates(self.cert_pem.as_bytes()).unwrap()[0].to_vec()
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        let chain = satchel::tls::certificates(self.cert_pem.as_bytes()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(satchel::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A reqwest client that trusts `ca` and nothing else.
pub fn client_trusting(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_info(true)
        .build()
        .unwrap()
}

/// The certificate the server presented for `response`'s connection.
pub fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("the client records TLS info");
    info.peer_certificate()
        .expect("a server certificate")
        .to_vec()
}

/// What a [`Proxy`] speaks to its clients before it pipes their bytes to the upstream server.
#[derive(Clone, Copy)]
pub enum Front {
    /// TLS from the first byte (HTTPS, AMQPS).
    Tls,
    /// PostgreSQL's: an 8-byte SSLRequest answered `S`, then TLS. A client that starts without
    /// one is piped in plaintext.
    Postgres,
    /// A PostgreSQL server without TLS: an SSLRequest answered `N`, then plaintext.
    PostgresRefusingTls,
}

/// A TLS-terminating proxy on 127.0.0.1 in front of a plaintext server; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl Proxy {
    /// `leaf` is the certificate the proxy presents (none for `PostgresRefusingTls`).
    pub async fn start(upstream: SocketAddr, front: Front, leaf: Option<&Leaf>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = leaf.map(Leaf::acceptor);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, front, acceptor).await;
                });
            }
        });
        Self { addr, task }
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    front: Front,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    if !matches!(front, Front::Tls) {
        let mut first = [0u8; 8];
        client.read_exact(&mut first).await?;
        let ssl = first == SSL_REQUEST;
        match front {
            Front::Postgres if ssl => client.write_all(b"S").await?,
            Front::PostgresRefusingTls if ssl => client.write_all(b"N").await?,
            _ => head.extend_from_slice(&first),
        }
        if !ssl || matches!(front, Front::PostgresRefusingTls) {
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(&head).await?;
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
            return Ok(());
        }
    }
    let acceptor = acceptor.expect("a TLS front has a certificate");
    let mut client = acceptor.accept(client).await?;
    let mut server = TcpStream::connect(upstream).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
