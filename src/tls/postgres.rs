//! `database_url`'s TLS as libpq reads it, turned into what sqlx does.
//!
//! sqlx already implements `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`: `require` encrypts without checking the certificate, `verify-ca` checks the
//! chain, `verify-full` the chain and the host name; `require` and stronger fail against a
//! server that refuses TLS) and adds `sslrootcert`'s certificates to the system roots. What it
//! does not do, and [`catalog_url`] does:
//! - libpq: `require` with a root certificate given checks the chain, as `verify-ca` does;
//! - libpq: `sslrootcert=system` means the system's roots and forces `verify-full` (a weaker
//!   mode given with it is an error);
//! - satchel: a verifying mode trusts `tls_ca_file` too.
//!
//! One difference remains, on the safe side: sqlx 0.8.6's `verify-ca` checks the host name
//! too (sqlx issue 3793: its verifier misses rustls's `NotValidForNameContext`).
//!
//! `PGSSLMODE` and `PGSSLROOTCERT` stand in for parameters the URL lacks, as with libpq.

use super::Trust;
use anyhow::Context;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [(&'static str, SslMode); 6] = [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    fn parse(text: &str) -> anyhow::Result<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, mode)| *mode)
            .with_context(|| {
                format!(
                    "database_url: sslmode must be disable, allow, prefer, require, verify-ca or \
                     verify-full, not {text:?}"
                )
            })
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::ALL.iter().find(|(_, m)| m == self).map(|(n, _)| *n);
        f.write_str(name.unwrap_or("?"))
    }
}

/// `url` with its `sslmode` and `sslrootcert` as sqlx must see them for libpq's meaning (see
/// the module's comment). A verifying mode with both `sslrootcert` and `tls_ca_file` trusts
/// both: their certificates are written together to `DATA_DIR/catalog-roots.pem`.
pub fn catalog_url(url: &str, trust: &Trust, data_dir: &Path) -> anyhow::Result<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    rewrite(url, trust, data_dir, env)
}

fn rewrite(
    url: &str,
    trust: &Trust,
    data_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    // A URL the url crate cannot read (several hosts) goes to sqlx as given.
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return Ok(url.to_owned());
    };
    let (mut mode, mut root, mut rest) = (None, None, Vec::new());
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => root = Some(value.into_owned()),
            _ => rest.push((key.into_owned(), value.into_owned())),
        }
    }
    let mode = mode.or_else(|| env("PGSSLMODE"));
    let mut root = root.or_else(|| env("PGSSLROOTCERT"));
    let mut mode = mode.as_deref().map(SslMode::parse).transpose()?;
    if root.as_deref() == Some("system") {
        mode = match mode {
            None | Some(SslMode::VerifyFull) => Some(SslMode::VerifyFull),
            Some(weaker) => anyhow::bail!(
                "database_url: sslrootcert=system needs sslmode=verify-full, not {weaker}"
            ),
        };
        // sqlx starts from the system roots: nothing to add.
        root = None;
    }
    if mode == Some(SslMode::Require) && root.is_some() {
        mode = Some(SslMode::VerifyCa);
    }
    if mode.is_some_and(SslMode::verifies) {
        if let (Some(ca_file), Some(ca_pem)) = (trust.ca_file(), trust.pem()) {
            root = Some(match root {
                None => ca_file.display().to_string(),
                Some(file) => {
                    let given = std::fs::read_to_string(&file)
                        .with_context(|| format!("database_url: cannot read sslrootcert {file}"))?;
                    let both = data_dir.join("catalog-roots.pem");
                    std::fs::write(&both, format!("{given}\n{ca_pem}"))
                        .with_context(|| format!("cannot write {}", both.display()))?;
                    both.display().to_string()
                }
            });
        }
    }
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        query.extend_pairs(rest);
        if let Some(mode) = mode {
            query.append_pair("sslmode", &mode.to_string());
        }
        if let Some(root) = &root {
            query.append_pair("sslrootcert", root);
        }
    }
    if parsed.query() == Some("") {
        parsed.set_query(None);
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(url: &str, trust: &Trust, env: &[(&str, &str)]) -> anyhow::Result<String> {
        let dir = std::env::temp_dir();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rewrite(url, trust, &dir, |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    const BASE: &str = "postgres://u@db.example:5432/app";

    #[test]
    fn modes_pass_through_and_nothing_is_added_without_a_reason() {
        let none = Trust::default();
        assert_eq!(with(BASE, &none, &[]).unwrap(), BASE);
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let url = format!("{BASE}?application_name=x&sslmode={mode}");
            assert_eq!(with(&url, &none, &[]).unwrap(), url);
        }
        let e = with(&format!("{BASE}?sslmode=required"), &none, &[]).unwrap_err();
        assert!(e.to_string().contains("sslmode must be"), "{e}");
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        let none = Trust::default();
        let url = with(
            &format!("{BASE}?sslmode=require&sslrootcert=/ca.pem"),
            &none,
            &[],
        );
        assert_eq!(
            url.unwrap(),
            format!("{BASE}?sslmode=verify-ca&sslrootcert=%2Fca.pem")
        );
        let env = [("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/ca.pem")];
        let url = with(BASE, &none, &env).unwrap();
        assert_eq!(
            url,
            format!("{BASE}?sslmode=verify-ca&sslrootcert=%2Fca.pem")
        );
    }

    #[test]
    fn sslrootcert_system_forces_verify_full_and_refuses_weaker_modes() {
        let none = Trust::default();
        let url = with(&format!("{BASE}?sslrootcert=system"), &none, &[]).unwrap();
        assert_eq!(url, format!("{BASE}?sslmode=verify-full"));
        let e = with(
            &format!("{BASE}?sslrootcert=system&sslmode=require"),
            &none,
            &[],
        );
        assert!(e.unwrap_err().to_string().contains("verify-full"));
    }

    #[test]
    fn a_verifying_mode_trusts_tls_ca_file_and_the_urls_root_together() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        // Any certificate will do: only its text is copied.
        let pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let trust = Trust {
            ca_file: Some(ca.clone()),
            extra: Some((pem.to_owned(), Vec::new())),
        };
        let url = rewrite(
            &format!("{BASE}?sslmode=verify-full"),
            &trust,
            dir.path(),
            |_| None,
        );
        let expected = format!("{}", ca.display()).replace('/', "%2F");
        assert_eq!(
            url.unwrap(),
            format!("{BASE}?sslmode=verify-full&sslrootcert={expected}")
        );
        // Not verifying: tls_ca_file changes nothing.
        let url = rewrite(
            &format!("{BASE}?sslmode=require"),
            &trust,
            dir.path(),
            |_| None,
        );
        assert_eq!(url.unwrap(), format!("{BASE}?sslmode=require"));
        let own = dir.path().join("own.pem");
        std::fs::write(&own, "OWN\n").unwrap();
        let url = format!("{BASE}?sslmode=verify-ca&sslrootcert={}", own.display());
        let url = rewrite(&url, &trust, dir.path(), |_| None).unwrap();
        assert!(url.contains("catalog-roots.pem"), "{url}");
        let both = std::fs::read_to_string(dir.path().join("catalog-roots.pem")).unwrap();
        assert_eq!(both, format!("OWN\n\n{pem}"));
    }
}
