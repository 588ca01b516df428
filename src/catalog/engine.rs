//! Where the two SQL engines really differ: how a pool is opened, which migrations run, and
//! the few statements that only PostgreSQL needs because it has many writers. Everything
//! else is in [`super::sql`], written once in SQL both engines accept.

use super::CatalogError;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Executor};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Engine {
    /// One file in the data directory, WAL mode: the embedded default.
    Sqlite,
    /// Several satchel processes behind one database.
    Postgres,
}

impl Engine {
    pub(super) fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            anyhow::bail!("database_url must start with sqlite:, postgres:// or postgresql://")
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }

    /// Connects and brings the schema up to date. Concurrent starts on PostgreSQL are safe:
    /// the migrator holds an advisory lock while it runs.
    pub(super) async fn open(self, url: &str, max_connections: u32) -> anyhow::Result<AnyPool> {
        sqlx::any::install_default_drivers();
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match self {
            Engine::Sqlite => {
                // The file is created on first start; WAL lets readers run beside the writer.
                let url = match url.contains("mode=") {
                    true => url.to_owned(),
                    false if url.contains('?') => format!("{url}&mode=rwc"),
                    false => format!("{url}?mode=rwc"),
                };
                // No ping before each acquire: a file's connection does not drop, and the ping
                // is a round trip to the connection's thread, as dear as a query.
                options
                    .max_connections(8)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
                    .connect(&url)
                    .await?
            }
            Engine::Postgres => {
                options
                    .max_connections(max_connections.max(1))
                    .connect(url)
                    .await?
            }
        };
        match self {
            Engine::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Engine::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(pool)
    }

    /// Appended to the sub-select that picks a job to lease. SKIP LOCKED: PostgreSQL processes
    /// claiming at once each take a different row instead of queueing behind (and then
    /// losing) the same one; the lease condition is re-checked on the row's latest version
    /// once it is locked. SQLite has one writer at a time, so its claim needs nothing.
    pub(super) fn claim_lock(self) -> &'static str {
        match self {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Appended to the SELECT of a chat row inside an insert's transaction: on PostgreSQL it
    /// locks the row, so that a concurrent erase (which deletes the chat row first) either
    /// waits for the insert to commit and then erases its media too, or has deleted the row
    /// and the insert sees it gone. SQLite's single writer serialises them already.
    pub(super) fn row_lock(self) -> &'static str {
        match self {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE",
        }
    }

    /// A statement (binding the chat id as `$1`) that serialises replacements of one chat's
    /// member set until commit, or `None`. On PostgreSQL row locks cannot do it: the DELETE of
    /// one replace does not see the other's uncommitted INSERTs, and a chat with no members has
    /// no rows to lock, so replaces queue on an advisory lock named after the chat. SQLite's
    /// single writer already serialises them.
    pub(super) fn members_lock(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => {
                Some("SELECT pg_advisory_xact_lock(hashtextextended('satchel.members:' || $1, 0))")
            }
        }
    }
}

async fn sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
    )
    .await?;
    Ok(())
}

/// Sorts a driver error: "try again later" (the pool or connection failed, or the server said
/// "not now": a broken connection, class 08; shutting down or starting, 57P0x; out of
/// connections, 53300) or anything else, a bug or bad data. SQLite's codes are numbers and
/// never take those forms.
pub(super) fn classify(e: sqlx::Error) -> CatalogError {
    let unavailable = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    };
    match unavailable {
        true => CatalogError::Unavailable(e.into()),
        false => CatalogError::Other(e.into()),
    }
}
