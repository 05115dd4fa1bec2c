//! Test support (feature `testing`): a throw-away database per test, so tests on PostgreSQL
//! run in parallel without seeing each other's rows, and a skip when no server is configured.
//!
//! ```no_run
//! # async fn example() {
//! use onramp_store_postgres::testing::FreshDatabase;
//! let Some(db) = FreshDatabase::from_env().await else { return };
//! let Ok(store) = onramp_store_postgres::PostgresStore::open(db.url()).await else { return };
//! # }
//! ```

use crate::db_error;
use onramp_store::StoreError;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::time::Duration;

/// The environment variable naming the server tests may create databases on, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_URL_VAR: &str = "ONRAMP_TEST_POSTGRES_URL";

/// How long creating or dropping a database keeps asking for a connection while the server
/// turns connections away for a passing reason.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// A database created for one test and dropped (with its connections) when this goes.
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    /// A fresh database on the server of [`TEST_URL_VAR`]; `None`, after printing a skip
    /// line, when the variable is not set. A set variable whose server cannot be reached is
    /// a panic: the test was asked to run and cannot.
    pub async fn from_env() -> Option<FreshDatabase> {
        let Ok(admin_url) = std::env::var(TEST_URL_VAR) else {
            eprintln!("skipped: {TEST_URL_VAR} is not set");
            return None;
        };
        match FreshDatabase::create(&admin_url).await {
            Ok(db) => Some(db),
            Err(e) => panic!("cannot create a test database via {TEST_URL_VAR}: {e}"),
        }
    }

    /// Creates `onramp_t_<uuid>` through the database at `admin_url`.
    pub async fn create(admin_url: &str) -> Result<FreshDatabase, StoreError> {
        let name = format!("onramp_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection(admin_url).await.map_err(db_error)?;
        // The name is ours (a fixed prefix and hex digits), never input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(db_error)?;
        let _ = admin.close().await;
        Ok(FreshDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for FreshDatabase {
    /// Drops the database, best effort. `Drop` cannot await and may run on a runtime thread,
    /// so the work runs on its own thread with its own small runtime.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("could not drop test database {name}: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let dropped = async {
                    let mut admin = admin_connection(&admin_url).await?;
                    sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                };
                if let Err(e) = dropped.await {
                    eprintln!("could not drop test database {name}: {e}");
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A connection to the server's admin database. Tests running in parallel (several suites,
/// each app with its own pool) can take every connection slot for a moment; the server then
/// refuses new ones with "too many clients" (53300), or "starting up" (57P03) right after a
/// restart. Both pass, so they are retried for up to [`CONNECT_PATIENCE`] — without this a
/// test failed at random, and a database whose drop was refused stayed on the server.
async fn admin_connection(admin_url: &str) -> Result<PgConnection, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    let mut delay = Duration::from_millis(20);
    loop {
        match PgConnection::connect(admin_url).await {
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("53300" | "57P03"))
                    && tokio::time::Instant::now() + delay < deadline =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// `url` with its database name replaced by `database` (query parameters kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(
            with_database("postgres:///db?host=/run/postgresql", "x"),
            "postgres:///x?host=/run/postgresql"
        );
    }
}
