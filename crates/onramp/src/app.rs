//! Putting a process together: configuration, the store picked by URL scheme, the engine,
//! the background runtime and the HTTP server.

use anyhow::{Context, bail};
use onramp_config::{Config, StoreConfig};
use onramp_core::clock::SystemClock;
use onramp_engine::Engine;
use onramp_engine::runtime::{Runtime, RuntimeOptions};
use onramp_store::SharedStore;
use onramp_store_postgres::PostgresStore;
use onramp_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight steps get to finish at shutdown before they are released.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the config: `--config`, else `ONRAMP_CONFIG`, else built-in defaults; then
/// `--database` / `--listen` flags over everything.
pub fn load_config(
    path: Option<&Path>,
    database: Option<&str>,
    listen: Option<&str>,
) -> anyhow::Result<Config> {
    let from_env = env("ONRAMP_CONFIG");
    let path = path.map(Path::to_path_buf).or(from_env.map(Into::into));
    let mut config = match path {
        Some(p) => {
            Config::load(&p, &env).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?
        }
        None => Config::defaults_with_env(&env),
    };
    if let Some(url) = database {
        config.store.url = url.to_owned();
    }
    if let Some(addr) = listen {
        config.server.listen = addr.to_owned();
    }
    Ok(config)
}

/// Opens the store `[store]` names, applying migrations.
pub async fn open_store(store: &StoreConfig) -> anyhow::Result<SharedStore> {
    let url = store.url.as_str();
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open(url)
            .await
            .with_context(|| format!("could not open the database {url}"))?;
        Ok(Arc::new(store))
    } else if onramp_store_postgres::is_postgres_url(url) {
        let store = PostgresStore::open_with(url, store.max_connections)
            .await
            .with_context(|| {
                format!(
                    "could not open the database {}",
                    onramp_store_postgres::redacted_url(url)
                )
            })?;
        Ok(Arc::new(store))
    } else {
        bail!(
            "unsupported database URL `{}`: use sqlite://PATH or postgres://USER@HOST/DATABASE",
            onramp_store_postgres::redacted_url(url)
        )
    }
}

/// Fails when `url` names a SQLite file that does not exist. For commands that only make
/// sense on an existing database: opening creates the file, so a mistyped path would
/// otherwise pass `audit verify` on a new, empty database.
pub fn require_existing_database(url: &str) -> anyhow::Result<()> {
    if url.starts_with("sqlite:") {
        let path = onramp_store_sqlite::path_from_url(url)?;
        if !path.exists() {
            bail!("the database {} does not exist", path.display());
        }
    }
    Ok(())
}

/// Opens the store and builds the engine.
pub async fn engine(config: Config) -> anyhow::Result<Arc<Engine>> {
    let store = open_store(&config.store).await?;
    Ok(Engine::new(store, config, Arc::new(SystemClock)).await?)
}

/// A running server: API plus background work.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    runtime: Runtime,
    engine: Arc<Engine>,
}

impl Server {
    /// Binds the listener and starts the API, the workers and the scheduler.
    pub async fn start(engine: Arc<Engine>, options: RuntimeOptions) -> anyhow::Result<Server> {
        let listen = engine.config.server.listen.clone();
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("could not listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let runtime = Runtime::start(engine.clone(), options);
        let stop = CancellationToken::new();
        let app = onramp_api::observed(
            onramp_web::router(onramp_web::WebState {
                engine: engine.clone(),
            })
            .merge(onramp_api::router(onramp_api::AppState::new(
                engine.clone(),
            ))),
            engine.clone(),
        );
        let stopped = stop.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
        });
        Ok(Server {
            addr,
            stop,
            http,
            runtime,
            engine,
        })
    }

    /// Stops accepting requests, then stops the workers gracefully.
    pub async fn stop(self) {
        // Live streams end first: a graceful shutdown waits for open connections.
        self.engine.live.close();
        self.stop.cancel();
        let _ = self.http.await;
        self.runtime.stop(SHUTDOWN_GRACE).await;
    }
}

/// The process's stop request (Ctrl-C or SIGTERM), listened for from the moment it is
/// installed: a SIGTERM that arrives while the server is still starting up is then a
/// graceful stop, not the default action of killing the process on the spot.
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Starts listening; call it first thing in a long-running command.
    pub fn install() -> anyhow::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignal {
                interrupt: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignal {})
    }

    /// Resolves when the process is asked to stop.
    pub async fn received(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Creates or reports the admin token; a new token is printed once on stdout.
pub async fn bootstrap_admin(engine: &Engine) -> anyhow::Result<Option<String>> {
    let preset = env("ONRAMP_ADMIN_TOKEN").filter(|t| !t.is_empty());
    Ok(engine.bootstrap_admin(preset.as_deref()).await?)
}
