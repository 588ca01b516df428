//! TLS on every connection. Clients (the catalog, the queue, the store, the webhook) verify
//! their servers against the system roots plus `tls_ca_file` ([`Trust`]); a failed check is an
//! error naming the connection, never a fallback to plaintext. [`server`] is satchel's own
//! HTTPS (`tls_cert_file` / `tls_key_file`, re-read on SIGHUP); [`postgres`] reads
//! `database_url`'s `sslmode` and `sslrootcert` as libpq does.

pub mod postgres;
pub mod server;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The crypto provider of every rustls configuration satchel makes itself.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider. Several crates in the build enable both
/// ring and aws-lc-rs, and a rustls built with both has no default: libraries that build their
/// configuration with `ClientConfig::builder()` (lapin's `amqps://`) would panic with "no
/// process-level CryptoProvider". Idempotent; a provider installed earlier stays.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a client connection trusts: the system's roots plus the certificates of
/// `tls_ca_file`, read once at start-up.
#[derive(Clone, Default)]
pub struct Trust {
    ca_file: Option<PathBuf>,
    /// `tls_ca_file`'s text and its certificates.
    extra: Option<(String, Vec<CertificateDer<'static>>)>,
}

impl Trust {
    /// Reads `ca_file` (PEM, at least one certificate); `None` trusts the system roots alone.
    pub fn load(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = ca_file else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("tls_ca_file: cannot read {}", path.display()))?;
        let certs = certificates(text.as_bytes())
            .with_context(|| format!("tls_ca_file: {}", path.display()))?;
        Ok(Self {
            ca_file: Some(path.to_owned()),
            extra: Some((text, certs)),
        })
    }

    /// `tls_ca_file`, when set.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// `tls_ca_file`'s PEM text, when set.
    pub fn pem(&self) -> Option<&str> {
        self.extra.as_ref().map(|(pem, _)| pem.as_str())
    }

    /// The system roots plus `tls_ca_file`'s certificates.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "a system root certificate could not be read");
        }
        roots.add_parsable_certificates(native.certs);
        if let Some((_, certs)) = &self.extra {
            roots.add_parsable_certificates(certs.iter().cloned());
        }
        roots
    }

    /// A rustls client configuration that verifies servers against [`roots`](Self::roots).
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        Ok(ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("rustls has no safe protocol version")?
            .with_root_certificates(self.roots())
            .with_no_client_auth())
    }
}

/// A reqwest client builder (the webhook's) that verifies `https://` servers against the
/// system roots plus `tls_ca_file`.
pub fn http_client(trust: &Trust) -> anyhow::Result<reqwest::ClientBuilder> {
    Ok(reqwest::Client::builder().use_preconfigured_tls(trust.client_config()?))
}

/// Every certificate of a PEM text; an error if there is none.
pub fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("not PEM certificates")?;
    anyhow::ensure!(!certs.is_empty(), "holds no PEM certificate");
    Ok(certs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_has_a_provider_once_installed_and_configurations_build() {
        super::install_provider();
        super::install_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        assert!(!provider.cipher_suites.is_empty());
        // What lapin does for amqps://: it panics in a process without a default provider
        // when rustls is built with both ring and aws-lc-rs, as satchel's is.
        let _ = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        super::Trust::default().client_config().unwrap();
    }
}
