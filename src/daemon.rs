//! The running daemon's shared state: the db, the Docker engine, the router,
//! the per-app deploy locks and the table of pushes in flight.
//!
//! Built once by `serve` and shared (`Arc<Daemon>`) by the SSH endpoint, the
//! hook socket and the reconciler. Holds handles only; the work is done by
//! the pipeline modules.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use russh::keys::PrivateKey;
use tokio::sync::Mutex as AsyncMutex;

use crate::progress::Progress;
use crate::route::Router;
use crate::store::{KeyRecord, Store};

pub struct Daemon {
    pub store: Store,
    pub docker: Docker,
    pub router: Router,
    /// The TLS-ALPN-01 responder behind nginx's stream front, when on.
    pub alpn: Option<crate::alpn::Responder>,
    pub host_key: PrivateKey,
    /// This executable, run by the pre-receive hook.
    pub bin: PathBuf,
    /// `quarry.instance` label value of this data dir.
    pub instance: String,
    /// Apps answer at `<app>.<root_domain>`.
    pub root_domain: crate::validate::Domain,
    /// Address web containers publish their port on (this server's address).
    pub publish_address: String,
    pub pushes: Pushes,
    pub locks: AppLocks,
    /// The servers containers run on (`local` included).
    pub fleet: crate::fleet::Fleet,
    /// Answers the grid's create/destroy events through the provider.
    pub cloud: crate::cloud::Cloud,
    /// Authenticated SSH connections by key, closed when their key goes.
    pub sessions: Arc<crate::sessions::Sessions>,
    /// Scheduled jobs running now (one run per job at a time).
    pub cron: JobRuns,
    /// The apps' networks and their subnets.
    pub networks: crate::network::Networks,
    /// Held while a domain is checked against every other app's and then
    /// routed or recorded: one owner per domain.
    pub routing: AsyncMutex<()>,
    /// Builds on this server's engine against the prune of build layers.
    pub builds: crate::build::Gate,
}

impl Daemon {
    /// The Unix socket the pre-receive hook connects to.
    pub fn hook_socket(&self) -> PathBuf {
        self.store.root().join("quarry.sock")
    }

    /// The engine of `server` (the local one when it is unknown).
    pub fn docker_on(&self, server: &str) -> Docker {
        self.fleet
            .get(server)
            .map_or_else(|| self.docker.clone(), |(_, d)| d)
    }

    /// Containers of this instance on every server that answers (of one app
    /// when given), each tagged with its server. Servers in state unknown, or
    /// that do not answer, are skipped: their containers count as gone.
    pub async fn containers(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<crate::launch::Found>, crate::launch::LaunchError> {
        let mut all = Vec::new();
        for (server, docker) in self.fleet.answering() {
            // A server that does not answer counts like an unknown one: its
            // containers are gone until it does. The pinger marks it soon.
            let mut found = match crate::launch::list(&docker, &self.instance, app).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(server = %server.name, "cannot list containers: {e}");
                    continue;
                }
            };
            for c in &mut found {
                c.server = server.name.clone();
            }
            all.extend(found);
        }
        all.sort_by(|a, b| {
            (&a.app, &a.node, a.index, a.release, &a.server)
                .cmp(&(&b.app, &b.node, b.index, b.release, &b.server))
        });
        Ok(all)
    }

    /// Whether `server` takes new containers and keeps its own.
    pub fn server_running(&self, server: &str) -> bool {
        self.fleet
            .get(server)
            .is_some_and(|(s, _)| s.state == crate::fleet::ServerState::Running)
    }

    /// `<app>.<root domain>`.
    /// Fails only for a name that is no app name (apps are checked at the
    /// edge; the parse keeps the result a [`crate::validate::Domain`]).
    pub fn default_domain(
        &self,
        app: &str,
    ) -> Result<crate::validate::Domain, crate::validate::Invalid> {
        let app = crate::validate::app_name(app)?;
        crate::validate::Domain::under(&app, &self.root_domain)
    }
}

/// A push in flight: which key is pushing to which app. The SSH endpoint
/// registers it before spawning `git receive-pack` and hands the token to the
/// hook through the environment, so the hook can prove what it is.
#[derive(Debug, Clone)]
pub struct PushInfo {
    pub app: String,
    pub key: KeyRecord,
}

#[derive(Default, Clone)]
pub struct Pushes {
    inner: Arc<Mutex<HashMap<String, PushInfo>>>,
    /// App locks kept until git has updated the ref (after the hook exits),
    /// so the next deploy of the app sees the branch where this one left it.
    held: Arc<Mutex<HashMap<String, AppLock>>>,
}

impl Pushes {
    pub fn begin(&self, app: &str, key: &KeyRecord) -> PushGuard {
        let token: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)]))
            .collect();
        self.inner.lock().expect("pushes").insert(
            token.clone(),
            PushInfo {
                app: app.to_string(),
                key: key.clone(),
            },
        );
        PushGuard {
            token,
            pushes: self.clone(),
        }
    }

    pub fn lookup(&self, token: &str) -> Option<PushInfo> {
        self.inner.lock().expect("pushes").get(token).cloned()
    }

    /// Keep `lock` until the push with `token` ends.
    pub fn hold(&self, token: &str, lock: AppLock) {
        if self.inner.lock().expect("pushes").contains_key(token) {
            self.held
                .lock()
                .expect("pushes")
                .insert(token.to_string(), lock);
        }
    }
}

/// Removes its push from the table when the receive-pack ends.
pub struct PushGuard {
    token: String,
    pushes: Pushes,
}

impl PushGuard {
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.pushes
            .inner
            .lock()
            .expect("pushes")
            .remove(&self.token);
        self.pushes.held.lock().expect("pushes").remove(&self.token);
    }
}

/// One deploy per app at a time. Inside the daemon a mutex per app orders
/// the work; a file lock (`stacks/<app>/deploy.lock`) keeps a second daemon on
/// the same data dir out, and the kernel releases it if this process dies.
#[derive(Default)]
pub struct AppLocks {
    inner: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Why an app's deploy lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another deploy of {app} is still running after {secs}s; try again when it is done")]
    Busy { app: String, secs: u64 },
    #[error("{} is held by another process for {secs}s", .path.display())]
    HeldElsewhere { path: std::path::PathBuf, secs: u64 },
    #[error("{}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Held for the length of a deploy.
pub struct AppLock {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _file: File,
}

impl AppLocks {
    /// The in-process mutex of `app`.
    fn mutex(&self, app: &str) -> Arc<AsyncMutex<()>> {
        self.inner
            .lock()
            .expect("locks")
            .entry(app.to_string())
            .or_default()
            .clone()
    }

    /// `stacks/<app>/deploy.lock`, opened (not yet locked).
    fn lock_file(store: &Store, app: &str) -> Result<File, LockError> {
        let path = store.app_dir(app).join("deploy.lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Io { path, source })
    }

    /// Take the lock of `app` only if nobody holds it (background work).
    pub fn try_acquire(&self, store: &Store, app: &str) -> Option<AppLock> {
        let guard = self.mutex(app).try_lock_owned().ok()?;
        let file = Self::lock_file(store, app).ok()?;
        file.try_lock().ok()?;
        Some(AppLock {
            _guard: guard,
            _file: file,
        })
    }

    /// Take the lock of `app`, telling the user when it has to wait; give up
    /// after `limit`.
    pub async fn acquire(
        &self,
        store: &Store,
        app: &str,
        progress: &Progress,
        limit: Duration,
    ) -> Result<AppLock, LockError> {
        let mutex = self.mutex(app);
        let guard = match mutex.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                progress.step(format!("Waiting for another deploy of {app} to finish"));
                tokio::time::timeout(limit, mutex.lock_owned())
                    .await
                    .map_err(|_| LockError::Busy {
                        app: app.to_string(),
                        secs: limit.as_secs(),
                    })?
            }
        };
        let file = Self::lock_file(store, app)?;
        let path = store.app_dir(app).join("deploy.lock");
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockError::HeldElsewhere {
                        path,
                        secs: limit.as_secs(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LockError::Io { path, source });
                }
            }
        }
        Ok(AppLock {
            _guard: guard,
            _file: file,
        })
    }
}

/// The jobs running now, by (app, job): one run of a job at a time.
#[derive(Default)]
pub struct JobRuns(Mutex<HashSet<(String, String)>>);

/// Held while a job runs; frees its place when dropped.
pub struct JobSlot<'a> {
    runs: &'a JobRuns,
    key: (String, String),
}

impl JobRuns {
    /// A place for `job` of `app`, unless a run of it is going on.
    pub fn begin(&self, app: &str, job: &str) -> Option<JobSlot<'_>> {
        let key = (app.to_owned(), job.to_owned());
        let fresh = self.0.lock().expect("job runs").insert(key.clone());
        // Not `then_some`: it would make (and drop, locking again) a slot
        // for a job that is already running.
        if fresh {
            Some(JobSlot { runs: self, key })
        } else {
            None
        }
    }
}

impl JobRuns {
    pub fn is_running(&self, app: &str, job: &str) -> bool {
        self.0
            .lock()
            .expect("job runs")
            .contains(&(app.to_owned(), job.to_owned()))
    }
}

impl Drop for JobSlot<'_> {
    fn drop(&mut self) {
        self.runs.0.lock().expect("job runs").remove(&self.key);
    }
}
