//! The configuration as an operator writes it: files, variables and their mistakes.

use super::*;
use secrecy::ExposeSecret;

fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn env_overrides_file_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("satchel.toml");
    std::fs::write(&file, "max_upload_bytes = 10\nworkers = 3\n").unwrap();
    let c = Config::load_from(
        Some(&file),
        env(&[("SATCHEL_WORKERS", "5"), ("SATCHEL_API_TOKENS", "a, b,")]),
    )
    .unwrap();
    assert_eq!(c.max_upload_bytes, 10);
    assert_eq!(c.workers, 5);
    let tokens: Vec<_> = c
        .api_tokens
        .iter()
        .map(|t| t.expose_secret().to_owned())
        .collect();
    assert_eq!(tokens, ["a", "b"]);
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.link_max_ttl, Duration::from_secs(3600));
}

#[test]
fn https_needs_both_the_certificate_and_its_key() {
    let cert = ("SATCHEL_TLS_CERT_FILE", "/cert.pem");
    let key = ("SATCHEL_TLS_KEY_FILE", "/key.pem");
    for one in [cert, key] {
        let e = Config::load_from(None, env(&[one])).unwrap_err();
        assert!(
            e.contains("tls_cert_file") && e.contains("tls_key_file"),
            "{e}"
        );
    }
    let c = Config::load_from(None, env(&[cert, key])).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert_file, PathBuf::from("/cert.pem"));
    assert_eq!(tls.key_file, PathBuf::from("/key.pem"));
    assert!(Config::load_from(None, env(&[])).unwrap().tls.is_none());
}

#[test]
fn link_ttl_never_exceeds_seven_days() {
    let c = Config::load_from(None, env(&[("SATCHEL_LINK_MAX_TTL_SECONDS", "99999999")])).unwrap();
    assert_eq!(c.link_max_ttl, Duration::from_secs(LINK_TTL_CEILING));
}

#[test]
fn unknown_keys_are_errors_not_silence() {
    let e = Config::load_from(None, env(&[("SATCHEL_LISTN", "x")])).unwrap_err();
    assert_eq!(
        e,
        "SATCHEL_LISTN is not a known setting (did you mean SATCHEL_LISTEN?)"
    );
}

#[test]
fn payloads_are_signed_only_where_tls_does_not_guard_them() {
    let s3 = |pairs: &[(&str, &str)]| {
        let mut all = vec![
            ("SATCHEL_S3_ACCESS_KEY_ID", "k"),
            ("SATCHEL_S3_SECRET_ACCESS_KEY", "s"),
        ];
        all.extend_from_slice(pairs);
        Config::load_from(None, env(&all)).unwrap().s3.unwrap()
    };
    assert!(!s3(&[]).sign_payloads(), "AWS itself is reached over TLS");
    assert!(s3(&[("SATCHEL_S3_ENDPOINT", "http://127.0.0.1:3900")]).sign_payloads());
    assert!(!s3(&[("SATCHEL_S3_ENDPOINT", "HTTPS://s3.example.com")]).sign_payloads());
    assert!(s3(&[
        ("SATCHEL_S3_ENDPOINT", "https://s3.example.com"),
        ("SATCHEL_S3_PAYLOAD_SIGNING", "always")
    ])
    .sign_payloads());
    assert!(!s3(&[
        ("SATCHEL_S3_ENDPOINT", "http://127.0.0.1:3900"),
        ("SATCHEL_S3_PAYLOAD_SIGNING", "never")
    ])
    .sign_payloads());
    assert!(Config::load_from(None, env(&[("SATCHEL_S3_PAYLOAD_SIGNING", "sometimes")])).is_err());
}

#[test]
fn webhook_secrets_rotate_as_a_toml_array_a_comma_list_or_lines_of_a_file() {
    let (new, old) = ("n".repeat(32), "o".repeat(40));
    let secrets = |c: Config| -> Vec<String> {
        let exposed = c
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret().to_owned());
        exposed.collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("satchel.toml");
    std::fs::write(&toml, format!("webhook_secrets = [\"{new}\", \"{old}\"]\n")).unwrap();
    let c = Config::load_from(Some(&toml), env(&[])).unwrap();
    assert_eq!(secrets(c), [new.as_str(), old.as_str()]);

    let list = format!("{new}, {old}");
    let c = Config::load_from(None, env(&[("SATCHEL_WEBHOOK_SECRETS", &list)])).unwrap();
    assert_eq!(secrets(c), [new.as_str(), old.as_str()]);

    let file = dir.path().join("webhook-secret");
    std::fs::write(&file, format!("{new}\n\n  {old}  \n")).unwrap();
    let path = file.to_str().unwrap();
    let c = Config::load_from(None, env(&[("SATCHEL_WEBHOOK_SECRET_FILE", path)])).unwrap();
    assert_eq!(secrets(c), [new.as_str(), old.as_str()]);

    // The value wins over the file, as for link_secret.
    let c = Config::load_from(
        None,
        env(&[
            ("SATCHEL_WEBHOOK_SECRET_FILE", path),
            ("SATCHEL_WEBHOOK_SECRET", &old),
        ]),
    )
    .unwrap();
    assert_eq!(secrets(c), [old.as_str()]);
    assert!(secrets(Config::load_from(None, env(&[])).unwrap()).is_empty());
    let e = Config::load_from(None, env(&[("SATCHEL_WEBHOOK_SECRETS", " , ")])).unwrap_err();
    assert_eq!(
        e,
        "webhook_secrets (SATCHEL_WEBHOOK_SECRETS) lists no secret"
    );
}

#[test]
fn the_bucket_key_comes_from_its_value_or_its_file() {
    let key = "k".repeat(32);
    let s3 = [
        ("SATCHEL_S3_ACCESS_KEY_ID", "k"),
        ("SATCHEL_S3_SECRET_ACCESS_KEY", "s"),
    ];
    let bucket_key = |pairs: &[(&str, &str)]| {
        let all: Vec<_> = s3.iter().chain(pairs).copied().collect();
        let c = Config::load_from(None, env(&all)).unwrap();
        let key = c.s3.unwrap().bucket_key;
        key.map(|k| k.expose_secret().to_owned())
    };
    assert_eq!(bucket_key(&[]), None);
    assert_eq!(
        bucket_key(&[("SATCHEL_S3_BUCKET_KEY", &key)]),
        Some(key.clone())
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bucket-key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(
        bucket_key(&[("SATCHEL_S3_BUCKET_KEY_FILE", path)]),
        Some(key.clone())
    );
    std::fs::write(&file, format!("{key}\n{key}\n")).unwrap();
    let all: Vec<_> = s3
        .iter()
        .copied()
        .chain([("SATCHEL_S3_BUCKET_KEY_FILE", path)])
        .collect();
    let e = Config::load_from(None, env(&all)).unwrap_err();
    assert!(e.contains("it must hold one secret"), "{e}");
}

#[test]
fn the_readme_documents_every_key_with_its_variable_and_no_other() {
    let readme = include_str!("../../README.md");
    let rows: std::collections::BTreeSet<(String, String)> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` | `SATCHEL_"))
        .filter_map(|(key, rest)| Some((key.to_owned(), rest.split_once('`')?.0.to_owned())))
        .collect();
    let keys = KEYS
        .iter()
        .map(|(key, _)| (key.to_string(), key.to_ascii_uppercase()))
        .collect();
    assert_eq!(rows, keys);
}
