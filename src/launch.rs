//! Launch: the only module that starts, checks and stops app containers.
//!
//! Containers carry labels (`quarry.instance`, `quarry.app`, `quarry.node`,
//! `quarry.index`, `quarry.release`) so that Quarry finds its own containers
//! by asking the engine, never by trusting its memory. Web containers publish
//! their `$PORT` on the server's address with an ephemeral host port; nginx
//! proxies to that address. Every container drops `NET_RAW`, sets
//! no-new-privileges and has memory, pids and CPU limits; a volume is mounted
//! only when its labels say it is the service's. May touch: the Docker engine.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The port every web container listens on inside (`$PORT`).
pub const CONTAINER_PORT: u16 = 5000;
/// Memory limit of a container whose quarry.yml sets none (MiB): the slice
/// size the grid reserves for it.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Processes (threads included) one container may run: ends fork bombs.
pub const PIDS_LIMIT: i64 = 1024;
/// CPU time one container may use: one core.
pub const NANO_CPUS: i64 = 1_000_000_000;

pub const LABEL_INSTANCE: &str = "quarry.instance";
pub const LABEL_APP: &str = "quarry.app";
pub const LABEL_NODE: &str = "quarry.node";
pub const LABEL_INDEX: &str = "quarry.index";
pub const LABEL_RELEASE: &str = "quarry.release";
/// On service containers: the service name.
pub const LABEL_SERVICE: &str = "quarry.service";
/// On service containers: the hash of the service definition they run.
pub const LABEL_SPEC: &str = "quarry.spec";
/// On one-off containers (release commands): never part of the app's state.
pub const LABEL_ONEOFF: &str = "quarry.oneoff";
/// On node containers: a digest of the service addresses they were given,
/// so a service that moved shows which containers must be replaced.
pub const LABEL_LINKS: &str = "quarry.links";

pub use crate::manifest::Command;

/// Everything needed to boot one node container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// `<app>.<node>.<n>` once live; a new release boots as `<app>.<node>.<n>.v<N>`.
    pub name: String,
    pub image: String,
    pub app: String,
    pub node: String,
    pub index: u32,
    pub release: u32,
    pub env: BTreeMap<String, String>,
    pub command: Option<Command>,
    /// Hard memory limit in MiB.
    pub memory: Option<u32>,
    /// Publish `$PORT` on this host address (web nodes), or the service's
    /// own port (services, see `service_port`).
    pub publish_on: Option<String>,
    /// A service's port: published instead of `$PORT`, and no `PORT` is set.
    pub service_port: Option<u16>,
    /// The app's network (its id), and the names the container answers to on it.
    pub network: Option<String>,
    pub aliases: Vec<String>,
    /// Named volumes: (volume, absolute container path).
    pub volumes: Vec<(String, String)>,
    /// More labels (service name and spec hash, one-off marker).
    pub labels: BTreeMap<String, String>,
    /// Keep the container running across engine restarts and crashes.
    pub restart: bool,
}

/// A container Quarry found on the engine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub app: String,
    pub node: String,
    pub index: u32,
    pub release: u32,
    /// `running`, `exited`, `restarting`, …
    pub state: String,
    pub status: String,
    /// Where nginx reaches it, for web containers.
    pub address: Option<SocketAddr>,
    /// For service containers: the service and its definition's hash.
    pub service: Option<String>,
    pub spec: Option<String>,
    /// [`LABEL_LINKS`] of a node container.
    #[serde(skip)]
    pub links: Option<String>,
    /// The server (fleet member) it runs on.
    pub server: String,
}

impl Found {
    /// Whether it carries its steady name `<app>.<node>.<n>`: not a service,
    /// and not a new container of a rollout still named `….v<N>`.
    pub fn is_steady(&self) -> bool {
        self.service.is_none() && self.name == format!("{}.{}.{}", self.app, self.node, self.index)
    }
}

/// Start a container; returns its id.
pub async fn start(
    docker: &Docker,
    instance: &str,
    spec: &ContainerSpec,
) -> Result<String, String> {
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut port_bindings = HashMap::new();
    let mut exposed = None;
    if let Some(host) = &spec.publish_on {
        let port = match spec.service_port {
            Some(port) => port,
            None => {
                env.push(format!("PORT={CONTAINER_PORT}"));
                CONTAINER_PORT
            }
        };
        let key = format!("{port}/tcp");
        port_bindings.insert(
            key.clone(),
            Some(vec![PortBinding {
                host_ip: Some(host.clone()),
                host_port: Some(String::new()),
            }]),
        );
        exposed = Some(vec![key]);
    }
    let mut labels = HashMap::from([
        (LABEL_INSTANCE.to_string(), instance.to_string()),
        (LABEL_APP.to_string(), spec.app.clone()),
        (LABEL_NODE.to_string(), spec.node.clone()),
        (LABEL_INDEX.to_string(), spec.index.to_string()),
        (LABEL_RELEASE.to_string(), spec.release.to_string()),
    ]);
    labels.extend(spec.labels.clone());
    let mut binds = Vec::new();
    for (volume, path) in &spec.volumes {
        let volume = ensure_volume(docker, instance, &spec.app, &spec.node, volume).await?;
        binds.push(format!("{volume}:{path}"));
    }
    let networking_config = spec
        .network
        .as_ref()
        .map(|net| bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                bollard::models::EndpointSettings {
                    aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
    let (entrypoint, cmd) = match &spec.command {
        None => (None, None),
        Some(Command::Shell(s)) => (
            Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
            Some(vec![s.clone()]),
        ),
        Some(Command::Exec(argv)) => (Some(vec![argv[0].clone()]), Some(argv[1..].to_vec())),
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: exposed,
        entrypoint,
        cmd,
        hostname: Some(
            format!("{}-{}-{}", spec.app, spec.node, spec.index)
                .chars()
                .take(63)
                .collect(),
        ),
        networking_config,
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            // The slice the grid reserved is also the container's limit.
            memory: Some(i64::from(spec.memory.unwrap_or(DEFAULT_MEMORY_MIB)) * 1024 * 1024),
            pids_limit: Some(PIDS_LIMIT),
            nano_cpus: Some(NANO_CPUS),
            // No raw sockets (no spoofing on the bridge) and no setuid
            // escalation inside: an app needs neither.
            cap_drop: Some(vec!["NET_RAW".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            init: Some(true),
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: spec.network.clone(),
            restart_policy: Some(RestartPolicy {
                name: Some(if spec.restart {
                    RestartPolicyNameEnum::UNLESS_STOPPED
                } else {
                    RestartPolicyNameEnum::NO
                }),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A leftover of ours from an interrupted attempt holds the name: clear
    // it. A container of anyone else is never touched.
    match owner(docker, &spec.name).await {
        NameOwner::Free => {}
        NameOwner::Us(inst) if inst == instance => remove(docker, &spec.name, 0).await?,
        _ => return Err(foreign_name(&spec.name)),
    }
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| {
            format!(
                "cannot create container {}: {}",
                spec.name,
                docker_message(&e)
            )
        })?;
    if let Err(e) = docker.start_container(&created.id, None).await {
        let _ = remove(docker, &created.id, 0).await;
        return Err(format!(
            "cannot start container {}: {}",
            spec.name,
            docker_message(&e)
        ));
    }
    Ok(created.id)
}

/// The address nginx reaches a web container at, once it is running.
pub async fn address(docker: &Docker, id: &str) -> Result<Option<SocketAddr>, String> {
    published(docker, id, CONTAINER_PORT).await
}

/// Where container `port` of `id` is published on its server, if it is.
pub async fn published(docker: &Docker, id: &str, port: u16) -> Result<Option<SocketAddr>, String> {
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| docker_message(&e))?;
    let ports = info
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default();
    let binding = ports
        .get(&format!("{port}/tcp"))
        .cloned()
        .flatten()
        .and_then(|b| b.into_iter().next());
    Ok(binding.and_then(|b| {
        let ip = b.host_ip?;
        let port: u16 = b.host_port?.parse().ok()?;
        let ip = if ip.is_empty() || ip == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            ip
        };
        format!("{ip}:{port}").parse().ok()
    }))
}

/// Why a container was not ready.
#[derive(Debug)]
pub struct NotReady {
    pub reason: String,
    /// The container's last log lines.
    pub logs: Vec<String>,
}

/// How a new web container proves it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCheck {
    /// `Some(path)`: GET it with the app's first domain as Host. `None`: TCP connect.
    pub path: Option<String>,
    /// A configured check wants 2xx/3xx; the default accepts any non-5xx.
    pub strict: bool,
    pub interval: Duration,
    /// Give up after this many failed probes (`None`: only the deadline counts).
    pub attempts: Option<u32>,
    pub deadline: Duration,
}

impl ReadyCheck {
    /// From quarry.yml's `healthcheck`; without one: GET / accepting any
    /// non-5xx within 60 s, probed often so a fast app is live fast.
    pub fn from_manifest(check: Option<&crate::manifest::HealthCheck>) -> ReadyCheck {
        match check {
            None => ReadyCheck {
                path: Some("/".into()),
                strict: false,
                interval: Duration::from_millis(200),
                attempts: None,
                deadline: Duration::from_secs(60),
            },
            Some(c) => ReadyCheck {
                path: if c.tcp {
                    None
                } else {
                    Some(c.path.clone().unwrap_or_else(|| "/".into()))
                },
                strict: true,
                interval: Duration::from_secs(c.interval.max(1).into()),
                attempts: c.attempts,
                deadline: Duration::from_secs(c.timeout.into()),
            },
        }
    }
}

/// Wait until the web container `id` passes `check` at its published
/// address, or fail when it exits, runs out of attempts or the deadline passes.
pub async fn wait_ready(
    docker: &Docker,
    id: &str,
    host_header: &str,
    check: &ReadyCheck,
) -> Result<SocketAddr, NotReady> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let mut attempts = 0u32;
    loop {
        if let Some(nr) = stopped(docker, id, " before it answered").await {
            return Err(nr);
        }
        if let Ok(Some(addr)) = address(docker, id).await {
            attempts += 1;
            let plural = if attempts == 1 { "attempt" } else { "attempts" };
            match &check.path {
                Some(path) => match probe_http(addr, host_header, path, Duration::from_secs(2))
                    .await
                {
                    Ok(code)
                        if (check.strict && (200..400).contains(&code))
                            || (!check.strict && code < 500) =>
                    {
                        return Ok(addr);
                    }
                    Ok(code) => {
                        last = format!("GET {path} on {addr} → {code} after {attempts} {plural}")
                    }
                    Err(e) => {
                        last = format!("GET {path} on {addr} → {e} after {attempts} {plural}")
                    }
                },
                None => {
                    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
                        .await
                    {
                        Ok(Ok(_)) => return Ok(addr),
                        Ok(Err(e)) => {
                            last = format!(
                                "TCP connect to {addr} → {} after {attempts} {plural}",
                                e.kind()
                            )
                        }
                        Err(_) => {
                            last = format!(
                                "TCP connect to {addr} → no answer after {attempts} {plural}"
                            )
                        }
                    }
                }
            }
            if check.attempts.is_some_and(|max| attempts >= max) {
                return Err(NotReady {
                    reason: format!("health check failed: {last}"),
                    logs: tail_logs(docker, id, 20).await,
                });
            }
        }
        if started.elapsed() >= check.deadline {
            return Err(NotReady {
                reason: format!(
                    "health check failed within {}s: {last}; does the app listen on $PORT?",
                    check.deadline.as_secs()
                ),
                logs: tail_logs(docker, id, 20).await,
            });
        }
        // A fast app is live fast: the first probes come quickly, then the
        // configured interval. Not when attempts are counted: each then
        // stands for one interval.
        let pause = match (check.attempts, attempts) {
            (None, 0..=4) => check.interval.min(Duration::from_millis(25)),
            (None, 5..=12) => check.interval.min(Duration::from_millis(100)),
            _ => check.interval,
        };
        tokio::time::sleep(pause).await;
    }
}

/// A worker has no port to probe: it is ready when it is still running after
/// `settle`, and not ready when it exits before.
pub async fn wait_stays_up(docker: &Docker, id: &str, settle: Duration) -> Result<(), NotReady> {
    let until = Instant::now() + settle;
    loop {
        if let Some(nr) = stopped(docker, id, "").await {
            return Err(nr);
        }
        if Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Why `id` is not running (exited, or restarting after a crash), with its
/// last log lines; `None` while it runs.
async fn stopped(docker: &Docker, id: &str, context: &str) -> Option<NotReady> {
    let state = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|i| i.state);
    let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let restarting = state.as_ref().and_then(|s| s.restarting).unwrap_or(false);
    if running && !restarting {
        return None;
    }
    let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
    Some(NotReady {
        reason: format!("the container exited with code {code}{context}"),
        logs: tail_logs(docker, id, 20).await,
    })
}

/// One HTTP/1.0 GET; returns the status code.
pub async fn probe_http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| e.kind().to_string())?;
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: quarry-health\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| "connection closed without an HTTP answer".to_string())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
}

/// The last `n` log lines of a container (stdout and stderr).
pub async fn tail_logs(docker: &Docker, id: &str, n: usize) -> Vec<String> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&n.to_string())
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        out.extend(text.lines().map(str::to_string));
    }
    let skip = out.len().saturating_sub(n);
    out.split_off(skip)
}

/// Stop (SIGTERM, then SIGKILL after `grace` seconds) and remove a container.
/// A container that is already gone is not an error.
pub async fn remove(docker: &Docker, id_or_name: &str, grace: i32) -> Result<(), String> {
    if grace > 0 {
        let options = StopContainerOptionsBuilder::default().t(grace).build();
        let _ = docker.stop_container(id_or_name, Some(options)).await;
    }
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(false)
        .build();
    match docker.remove_container(id_or_name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(format!(
            "cannot remove container {id_or_name}: {}",
            docker_message(&e)
        )),
    }
}

/// Who holds a container name on an engine.
#[derive(Debug, PartialEq, Eq)]
pub enum NameOwner {
    Free,
    /// A Quarry container, with its instance label.
    Us(String),
    /// A container Quarry did not make.
    Foreign,
}

pub async fn owner(docker: &Docker, name: &str) -> NameOwner {
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(info) => match info
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(LABEL_INSTANCE).cloned())
        {
            Some(instance) => NameOwner::Us(instance),
            None => NameOwner::Foreign,
        },
        Err(_) => NameOwner::Free,
    }
}

/// The refusal when a name Quarry needs is taken by someone else.
pub fn foreign_name(name: &str) -> String {
    format!(
        "a container named {name} exists on the engine and Quarry did not create it (or another Quarry did); rename or remove it, or use another app name"
    )
}

/// Give a container its steady-state name.
pub async fn rename(docker: &Docker, id: &str, name: &str) -> Result<(), String> {
    let options = RenameContainerOptionsBuilder::default().name(name).build();
    docker
        .rename_container(id, options)
        .await
        .map_err(|e| format!("cannot rename container to {name}: {}", docker_message(&e)))
}

/// Every container of this instance (of one app when `app` is given).
pub async fn list(
    docker: &Docker,
    instance: &str,
    app: Option<&str>,
) -> Result<Vec<Found>, String> {
    let mut labels = vec![format!("{LABEL_INSTANCE}={instance}")];
    if let Some(app) = app {
        labels.push(format!("{LABEL_APP}={app}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let summaries = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| format!("cannot list containers: {}", docker_message(&e)))?;
    let mut out = Vec::new();
    for s in summaries {
        let labels = s.labels.unwrap_or_default();
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let address = s.ports.unwrap_or_default().into_iter().find_map(|p| {
            if p.private_port != CONTAINER_PORT {
                return None;
            }
            let ip =
                p.ip.filter(|i| !i.is_empty() && i != "0.0.0.0")
                    .unwrap_or_else(|| "127.0.0.1".into());
            format!("{ip}:{}", p.public_port?).parse().ok()
        });
        if labels.contains_key(LABEL_ONEOFF) {
            continue;
        }
        out.push(Found {
            id: s.id.unwrap_or_default(),
            name: s
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            app: get(LABEL_APP),
            node: get(LABEL_NODE),
            index: get(LABEL_INDEX).parse().unwrap_or(0),
            release: get(LABEL_RELEASE).parse().unwrap_or(0),
            state: s.state.map(|st| st.to_string()).unwrap_or_default(),
            status: s.status.unwrap_or_default(),
            address,
            service: labels.get(LABEL_SERVICE).cloned(),
            spec: labels.get(LABEL_SPEC).cloned(),
            links: labels.get(LABEL_LINKS).cloned(),
            server: crate::fleet::LOCAL.to_string(),
        });
    }
    out.sort_by(|a, b| {
        (&a.app, &a.node, a.index, a.release).cmp(&(&b.app, &b.node, b.index, b.release))
    });
    Ok(out)
}

/// Join the running container `id` to `network` (an id) with `aliases`,
/// unless it is on it already: a service started before networks were per
/// app keeps running and its data, and is reached on the app's network.
pub async fn attach(
    docker: &Docker,
    id: &str,
    network: &str,
    aliases: &[String],
) -> Result<(), String> {
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| docker_message(&e))?;
    let joined = info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .values()
        .any(|e| e.network_id.as_deref() == Some(network));
    if joined {
        return Ok(());
    }
    let request = bollard::models::NetworkConnectRequest {
        container: id.to_string(),
        endpoint_config: Some(bollard::models::EndpointSettings {
            aliases: Some(aliases.to_vec()),
            ..Default::default()
        }),
    };
    docker.connect_network(network, request).await.map_err(|e| {
        format!(
            "cannot join container {id} to its app's network: {}",
            docker_message(&e)
        )
    })
}

/// The DNS name a service answers to for the app's containers.
pub fn service_host(app: &str, service: &str) -> String {
    format!("{service}.{app}")
}

/// The volume of `app`'s service `service` mounted `n`th: `.` joins the
/// parts, which no app or service name can contain, so no two apps' volumes
/// share a name.
pub fn volume_name(app: &str, service: &str, n: usize) -> String {
    format!("quarry.{app}.{service}.{n}")
}

/// Make sure the volume `name` ([`volume_name`]) exists and is this app's and
/// this service's; returns the name to mount. A volume of an older Quarry
/// (`quarry-<app>-<service>-<n>`) is mounted instead when its labels say it
/// is this service's, so upgrades keep their data.
async fn ensure_volume(
    docker: &Docker,
    instance: &str,
    app: &str,
    service: &str,
    name: &str,
) -> Result<String, String> {
    let owner = |v: &bollard::models::Volume| {
        let get = |k: &str| v.labels.get(k).cloned().unwrap_or_default();
        (get(LABEL_INSTANCE), get(LABEL_APP), get(LABEL_SERVICE))
    };
    let want = (instance.to_string(), app.to_string(), service.to_string());
    let check = |v: &bollard::models::Volume| {
        let have = owner(v);
        if have == want {
            Ok(())
        } else {
            Err(format!(
                "volume {name} exists but is not app {app}'s service {service} (its labels say app {:?}, service {:?}); refusing to mount it",
                have.1, have.2
            ))
        }
    };
    if let Ok(v) = docker.inspect_volume(name).await {
        check(&v)?;
        return Ok(name.to_string());
    }
    let legacy = name.replace('.', "-");
    if let Ok(v) = docker.inspect_volume(&legacy).await
        && owner(&v) == want
    {
        return Ok(legacy);
    }
    let request = bollard::models::VolumeCreateRequest {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_APP.to_string(), app.to_string()),
            (LABEL_SERVICE.to_string(), service.to_string()),
        ])),
        ..Default::default()
    };
    // Creating a volume that exists returns it unchanged: the labels tell
    // whether it is ours (someone may have made it since the inspect).
    let v = docker
        .create_volume(request)
        .await
        .map_err(|e| format!("cannot create volume {name}: {}", docker_message(&e)))?;
    check(&v)?;
    Ok(name.to_string())
}

/// Volumes of this instance (of one app when given).
/// A named volume of a service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub app: String,
    pub service: String,
}

pub async fn volumes(
    docker: &Docker,
    instance: &str,
    app: Option<&str>,
) -> Result<Vec<VolumeInfo>, String> {
    let mut labels = vec![format!("{LABEL_INSTANCE}={instance}")];
    if let Some(app) = app {
        labels.push(format!("{LABEL_APP}={app}"));
    }
    let filters = HashMap::from([("label".to_string(), labels)]);
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let list = docker
        .list_volumes(Some(options))
        .await
        .map_err(|e| docker_message(&e))?;
    let mut out: Vec<VolumeInfo> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| VolumeInfo {
            app: v.labels.get(LABEL_APP).cloned().unwrap_or_default(),
            service: v.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
            name: v.name,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub async fn remove_volume(docker: &Docker, name: &str) -> Result<(), String> {
    docker
        .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .map_err(|e| format!("cannot remove volume {name}: {}", docker_message(&e)))
}

/// Wait until a service container accepts TCP connections on `port`, or
/// fail when it exits or `deadline` passes: on its address in `network` (the
/// app network's id; a container on this machine), or on `at` (its
/// published address on another server).
pub async fn wait_tcp_ready(
    docker: &Docker,
    id: &str,
    network: &str,
    port: u16,
    at: Option<SocketAddr>,
    deadline: Duration,
) -> Result<(), NotReady> {
    let started = Instant::now();
    loop {
        let info = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await;
        let info = info.ok();
        let state = info.as_ref().and_then(|i| i.state.clone());
        if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
            return Err(NotReady {
                reason: format!("the container exited with code {code}"),
                logs: tail_logs(docker, id, 20).await,
            });
        }
        let ip = info
            .and_then(|i| i.network_settings)
            .and_then(|n| n.networks)
            .and_then(|n| {
                n.into_values()
                    .find(|e| e.network_id.as_deref() == Some(network))
            })
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        let target = at.or_else(|| ip.and_then(|ip| format!("{ip}:{port}").parse().ok()));
        if let Some(addr) = target
            && tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
                .await
                .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        if started.elapsed() >= deadline {
            return Err(NotReady {
                reason: format!(
                    "it did not accept connections on port {port} within {}s",
                    deadline.as_secs()
                ),
                logs: tail_logs(docker, id, 20).await,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run a one-off container to completion (a release command): exit code and output.
pub async fn run_once(
    docker: &Docker,
    instance: &str,
    spec: &ContainerSpec,
    deadline: Duration,
) -> Result<(i64, Vec<String>), String> {
    let id = start(docker, instance, spec).await?;
    let code = match tokio::time::timeout(deadline, exit_code(docker, &id)).await {
        Ok(code) => code,
        Err(_) => {
            let logs = tail_logs(docker, &id, 20).await;
            let _ = remove(docker, &id, 0).await;
            return Err(format!(
                "did not finish within {}s; last output: {}",
                deadline.as_secs(),
                logs.join(" | ")
            ));
        }
    };
    let logs = tail_logs(docker, &id, 50).await;
    let _ = remove(docker, &id, 0).await;
    Ok((code, logs))
}

/// The exit code of container `id` once it stops (-1 if the engine does not say).
pub async fn exit_code(docker: &Docker, id: &str) -> i64 {
    let mut stream =
        docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
    match stream.next().await {
        Some(Ok(r)) => r.status_code,
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        _ => -1,
    }
}

/// The engine's own words, without bollard's wrapping.
pub fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
