//! `quarry serve`: open the data dir, connect to Docker, start nginx, then
//! serve SSH and the hook socket until SIGINT/SIGTERM.
//!
//! Startup order matters: the data dir lock first (one daemon per data dir),
//! then the pieces that can fail with a clear message (Docker, nginx,
//! listeners), and only then the accept loops. Shutdown stops accepting,
//! stops nginx gracefully and removes the runtime files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use russh::keys::PrivateKey;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::daemon::{AppLocks, Daemon, Pushes};
use crate::route::Router;
use crate::store::{Store, write_atomic, write_json};

/// Settings of one `quarry serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub ssh: SocketAddr,
    pub http: SocketAddr,
    /// TLS listener of nginx (`None`: no HTTPS).
    pub https: Option<SocketAddr>,
    /// Where the local server's containers publish their ports.
    pub publish: std::net::IpAddr,
    pub root_domain: crate::validate::Domain,
    pub nginx: PathBuf,
}

pub use crate::store::Running;

/// Run until a signal arrives.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.data)
        .with_context(|| format!("cannot open data dir {}", config.data.display()))?;
    let lock_path = store.root().join("serve.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    if lock.try_lock().is_err() {
        bail!(
            "another quarry serve is running with data dir {}",
            store.root().display()
        );
    }
    clean_temp_files(store.root());
    let limits = crate::ssh::gate::Limits::from_env()?;
    match crate::ssh::gate::raise_nofile_limit() {
        Ok((before, after)) if before != after => {
            info!(?before, ?after, "raised the open file limit");
        }
        Ok(_) => {}
        Err(e) => warn!("cannot raise the open file limit: {e}"),
    }

    let host_key = host_key(store.root())?;
    let instance = store.instance_id()?;
    let docker = connect_docker().await?;

    let http = resolve_port(config.http)?;
    let https = config.https.map(resolve_port).transpose()?;
    let (alpn, front) = crate::tls::front_at_start(&store, https, &config.nginx)
        .await?
        .unzip();
    let router = Router::start(store.root(), http, https, front, config.nginx.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let ssh_listener = TcpListener::bind(config.ssh)
        .await
        .with_context(|| format!("cannot listen for SSH on {}", config.ssh))?;
    let ssh_addr = ssh_listener.local_addr()?;

    let socket = store.root().join("quarry.sock");
    let _ = std::fs::remove_file(&socket);
    let hook_listener =
        UnixListener::bind(&socket).with_context(|| format!("cannot bind {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;

    for app in store.apps()? {
        crate::receive::install_hooks(&store.repo_dir(&app))?;
    }

    let facts = crate::fleet::facts(&docker)
        .await
        .map_err(anyhow::Error::msg)?;
    let local = crate::fleet::Server {
        name: crate::fleet::LOCAL.into(),
        docker: std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
        address: config.publish.to_string(),
        memory: facts.memory_mib.unwrap_or(1024),
        labels: Default::default(),
        state: crate::fleet::ServerState::Running,
        facts,
        added: crate::store::now_rfc3339(),
        origin: None,
        tls: None,
        insecure: false,
        ssh: None,
        provisioned: Default::default(),
    };
    // The HQ key servers added over SSH authorize (`quarry keys hq`).
    crate::remote::hq_key(store.root()).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let fleet = crate::fleet::Fleet::load(&store, local, docker.clone()).await;
    let networks_root = store.root().to_path_buf();
    let daemon = Arc::new(Daemon {
        store,
        docker,
        router,
        alpn,
        host_key,
        bin: std::env::current_exe()?,
        instance,
        root_domain: config.root_domain.clone(),
        publish_address: config.publish.to_string(),
        pushes: Pushes::default(),
        locks: AppLocks::default(),
        cron: crate::daemon::JobRuns::default(),
        cloud: crate::cloud::Cloud::default(),
        networks: crate::network::Networks::new(&networks_root),
        routing: Default::default(),
        builds: Default::default(),
        fleet,
        sessions: Default::default(),
    });

    crate::tls::load_all(&daemon).await;
    crate::reconcile::at_start(&daemon).await;
    crate::buildpack::at_start(&daemon).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let ssh_task = tokio::spawn(crate::ssh::run(
        daemon.clone(),
        ssh_listener,
        limits,
        stop_rx.clone(),
    ));
    let key_sweep = tokio::spawn(
        daemon
            .sessions
            .clone()
            .sweep_forever(daemon.store.clone(), stop_rx.clone()),
    );
    let hook_task = tokio::spawn(crate::hook::serve(
        daemon.clone(),
        hook_listener,
        stop_rx.clone(),
    ));
    let reconciler = tokio::spawn(crate::reconcile::run_forever(
        daemon.clone(),
        stop_rx.clone(),
    ));
    let scheduler = tokio::spawn(crate::cron::run_forever(daemon.clone(), stop_rx.clone()));
    let supervise = {
        let daemon = daemon.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => daemon.router.ensure_running().await,
                    _ = stop.changed() => return,
                }
            }
        })
    };

    let running = Running {
        pid: std::process::id(),
        ssh: ssh_addr,
        http,
        https,
    };
    write_json(&daemon.store.root().join("serve.json"), &running, 0o644)?;
    // The lockdown's rules follow the fleet (and the ports just bound).
    tokio::spawn({
        let daemon = daemon.clone();
        async move {
            crate::lockdown::refresh(&daemon.store, &daemon.fleet, &daemon.docker).await;
        }
    });
    let https_text = https.map_or("off".to_string(), |a| a.to_string());
    info!(ssh = %ssh_addr, http = %http, https = %https_text, data = %daemon.store.root().display(), "quarry is serving");
    println!(
        "quarry is serving: ssh {ssh_addr}, http {http}, https {https_text}, data {}",
        daemon.store.root().display()
    );

    wait_for_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = ssh_task.await;
    hook_task.abort();
    key_sweep.abort();
    supervise.abort();
    let _ = scheduler.await;
    let _ = reconciler.await;
    daemon.router.stop().await;
    let _ = std::fs::remove_file(daemon.store.root().join("serve.json"));
    let _ = std::fs::remove_file(&socket);
    info!("stopped");
    drop(lock);
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// nginx cannot be told "port 0": pick a free port for it.
fn resolve_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("cannot bind {addr}"))?;
    Ok(l.local_addr()?)
}

/// Load the SSH host key, creating it on first start.
fn host_key(root: &Path) -> anyhow::Result<PrivateKey> {
    let path = root.join("ssh_host_ed25519_key");
    if path.exists() {
        return PrivateKey::read_openssh_file(&path)
            .with_context(|| format!("cannot read host key {}", path.display()));
    }
    let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .map_err(|e| anyhow::anyhow!("cannot generate a host key: {e}"))?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(&path, text.as_bytes(), 0o600)?;
    info!(path = %path.display(), "created SSH host key");
    Ok(key)
}

/// Connect to the engine named by DOCKER_HOST, or the local socket.
pub async fn connect_docker() -> anyhow::Result<bollard::Docker> {
    let docker =
        bollard::Docker::connect_with_defaults().context("cannot set up the Docker client")?;
    // bollard sends no API version prefix unless negotiated; older engines
    // refuse a fixed one.
    let docker = docker.negotiate_version().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Docker engine ({e}); start it (dockerd) or set DOCKER_HOST"
        )
    })?;
    Ok(docker)
}

/// Temp files of writes interrupted by a crash are garbage.
fn clean_temp_files(root: &Path) {
    fn walk(dir: &Path, depth: usize) {
        if depth > 4 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") && path.is_file() {
                warn!(path = %path.display(), "removing a half-written file");
                let _ = std::fs::remove_file(&path);
            } else if path.is_dir() && name != "repo.git" && name != "src" {
                walk(&path, depth + 1);
            }
        }
    }
    walk(root, 0);
}
