//! The PostgreSQL catalog over TLS, `sslmode` and `sslrootcert` as libpq reads them.

use super::*;
use crate::tls::{Ca, Front, Proxy, LOCAL};

/// `db`'s URL reached at `host:port` with `query`.
fn url_via(db: &TestDatabase, host: &str, port: u16, query: &str) -> String {
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_port(Some(port)).unwrap();
    url.set_query(Some(query));
    url.to_string()
}

/// The local server: the database's host and port.
fn server(db: &TestDatabase) -> SocketAddr {
    let url = reqwest::Url::parse(&db.url).unwrap();
    let (host, port) = (
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(5432),
    );
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .unwrap()
        .next()
        .unwrap()
}

async fn opens(dir: &Path, url: &str, extra: &[(&str, &str)]) {
    let mut all = vec![("SATCHEL_DATABASE_URL", url)];
    all.extend_from_slice(extra);
    if let Err(e) = satchel::Application::build(embedded_config(dir, &all)).await {
        panic!("{url}: the catalog did not open: {e:#}");
    }
}

async fn refused(dir: &Path, url: &str, extra: &[(&str, &str)]) -> String {
    let mut all = vec![("SATCHEL_DATABASE_URL", url)];
    all.extend_from_slice(extra);
    let e = build_error(embedded_config(dir, &all)).await;
    assert!(
        e.contains("catalog"),
        "{url}: the error names the catalog: {e}"
    );
    e
}

#[tokio::test]
async fn require_encrypts_against_the_local_servers_own_certificate() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let url = format!("{}?sslmode=require", db.url);
    let app = satchel::Application::build(embedded_config(
        dir.path(),
        &[("SATCHEL_DATABASE_URL", url.as_str())],
    ))
    .await
    .unwrap_or_else(|e| panic!("sslmode=require: {e:#}"));
    // Every connection of the app's pool is encrypted, as the server sees it.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let name = reqwest::Url::parse(&db.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let (encrypted, all): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(all > 0, "the app holds no connection");
    assert_eq!(encrypted, all, "a catalog connection is not encrypted");
    drop(app);
    // The local server's certificate is Debian's self-signed snakeoil, for `localhost` only.
    // (Debian keeps it in /etc/ssl/certs, which the system roots are read from, so its chain
    // passes here.) Named 127.0.0.1, verify-full refuses it.
    let full = format!("{}?sslmode=verify-full", db.url);
    assert!(full.contains("@127.0.0.1:"), "{full}");
    let e = refused(dir.path(), &full, &[]).await;
    assert!(e.contains("not valid for name"), "{e}");
}

#[tokio::test]
async fn verify_full_trusts_the_sslrootcert_or_tls_ca_file_and_require_with_a_root_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let ca = Ca::new("catalog CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let proxy = Proxy::start(server(&db), Front::Postgres, Some(&ca.issue(LOCAL))).await;
    let port = proxy.addr.port();
    let root = format!("sslmode=verify-full&sslrootcert={ca_file}");
    for host in ["localhost", "127.0.0.1"] {
        opens(dir.path(), &url_via(&db, host, port, &root), &[]).await;
    }
    let full = url_via(&db, "localhost", port, "sslmode=verify-full");
    opens(
        dir.path(),
        &full,
        &[("SATCHEL_TLS_CA_FILE", ca_file.as_str())],
    )
    .await;
    // Without the CA anywhere, the same server is refused.
    refused(dir.path(), &full, &[]).await;
    // libpq: `require` with a root certificate checks the chain.
    let require = format!("sslmode=require&sslrootcert={ca_file}");
    opens(dir.path(), &url_via(&db, "localhost", port, &require), &[]).await;
    let stranger = Ca::new("stranger CA").write(dir.path(), "stranger.pem");
    let require = format!("sslmode=require&sslrootcert={}", stranger.display());
    let e = refused(dir.path(), &url_via(&db, "localhost", port, &require), &[]).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    // Both the URL's root and tls_ca_file are trusted together.
    let both = format!("sslmode=verify-full&sslrootcert={}", stranger.display());
    opens(
        dir.path(),
        &url_via(&db, "localhost", port, &both),
        &[("SATCHEL_TLS_CA_FILE", ca_file.as_str())],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_ca_an_expired_certificate_or_another_host_name_refuses_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let ca = Ca::new("catalog CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let cases = [
        (
            "wrong CA",
            Ca::new("stranger CA").issue(LOCAL),
            "UnknownIssuer",
        ),
        ("expired", ca.issue_expired(LOCAL), "xpired"),
        ("host name", ca.issue(&["db.example"]), "not valid for name"),
    ];
    for (what, leaf, reason) in cases {
        let proxy = Proxy::start(server(&db), Front::Postgres, Some(&leaf)).await;
        let query = format!("sslmode=verify-full&sslrootcert={ca_file}");
        let url = url_via(&db, "localhost", proxy.addr.port(), &query);
        let e = refused(dir.path(), &url, &[]).await;
        assert!(e.contains(reason), "{what}: {e}");
        if what == "host name" {
            // libpq's verify-ca checks the chain only; sqlx 0.8.6's checks the name too (its
            // NoHostnameTlsVerifier misses rustls's NotValidForNameContext: sqlx issue 3793,
            // fixed by pull request 3861 after 0.8.6). Stricter, never weaker: when an upgrade
            // makes this connect, the README's `database_url` row must change with it.
            let query = format!("sslmode=verify-ca&sslrootcert={ca_file}");
            let url = url_via(&db, "localhost", proxy.addr.port(), &query);
            let e = refused(dir.path(), &url, &[]).await;
            assert!(e.contains(reason), "verify-ca: {e}");
        }
    }
}

#[tokio::test]
async fn a_server_that_refuses_tls_is_refused_never_used_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let ca = Ca::new("catalog CA");
    let ca_file = ca.write(dir.path(), "ca.pem").display().to_string();
    let proxy = Proxy::start(server(&db), Front::PostgresRefusingTls, None).await;
    let port = proxy.addr.port();
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = url_via(&db, "localhost", port, &format!("sslmode={mode}"));
        let e = refused(
            dir.path(),
            &url,
            &[("SATCHEL_TLS_CA_FILE", ca_file.as_str())],
        )
        .await;
        assert!(e.contains("does not support TLS"), "{mode}: {e}");
    }
    // The same server in plaintext works: only the refusal to downgrade failed the others.
    opens(
        dir.path(),
        &url_via(&db, "localhost", port, "sslmode=prefer"),
        &[],
    )
    .await;
}
