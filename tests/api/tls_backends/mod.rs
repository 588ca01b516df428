//! TLS to the real backends: PostgreSQL (`sslmode`, `sslrootcert`), RabbitMQ (`amqps://`) and
//! S3 (`https://`), each behind a TLS-terminating proxy of the test's own (certificates from
//! the test's CA, made at test time) or, for PostgreSQL's `require`, the local server's own
//! certificate. They need the servers: `scripts/test-real.sh` runs them, the embedded pass
//! does not, and a server that cannot be reached fails them.

mod catalog;
mod queue;
mod store;

use crate::helpers::*;
use std::net::SocketAddr;
use std::path::Path;

/// The settings of a node on the embedded backends (whatever the run) with `extra` on top.
pub fn embedded_config(dir: &Path, extra: &[(&str, &str)]) -> satchel::Config {
    let mut all: Vec<(&str, &str)> = FILESYSTEM_STORE.to_vec();
    all.extend([("SATCHEL_AMQP_URL", UNSET), ("SATCHEL_AMQP_PREFIX", UNSET)]);
    all.extend_from_slice(extra);
    test_config(dir, &all)
}

/// The address of the server in a `scheme://user@host:port/...` URL from the environment.
pub fn server_of(var: &str) -> (reqwest::Url, SocketAddr) {
    let url = std::env::var(var).unwrap_or_else(|_| {
        panic!("the TLS backend tests need {var} (scripts/test-real.sh sets it)")
    });
    let url = reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("{var}: {e}"));
    let host = url.host_str().expect("a host");
    let port = url.port().expect("a port");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .unwrap();
    (url, addr)
}

/// The error of a start-up that must fail, with its causes.
pub async fn build_error(config: satchel::Config) -> String {
    match satchel::Application::build(config).await {
        Ok(_) => panic!("the app started"),
        Err(e) => format!("{e:#}"),
    }
}
