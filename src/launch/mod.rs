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
use tokio::net::TcpStream;

mod error;
mod health;
mod inventory;
mod volumes;

pub use error::LaunchError;
pub use health::*;
pub use inventory::*;
pub use volumes::*;

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

/// A container's state as the engine reports it (`docker ps`'s words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// A word this version of Quarry does not know (a newer engine's).
    Unknown,
}

impl ContainerState {
    const KNOWN: [ContainerState; 7] = [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Paused,
        ContainerState::Restarting,
        ContainerState::Removing,
        ContainerState::Exited,
        ContainerState::Dead,
    ];

    pub fn parse(s: &str) -> ContainerState {
        ContainerState::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(ContainerState::Unknown)
    }

    /// Whether the engine may move a container from `self` to `to`
    /// (Docker's lifecycle; staying put always may). A state Quarry does
    /// not know may become anything.
    pub fn can_become(self, to: ContainerState) -> bool {
        use ContainerState::*;
        self == to
            || to == Unknown
            || match self {
                Created => matches!(to, Running | Removing | Dead),
                Running => matches!(to, Paused | Restarting | Exited | Removing | Dead),
                Paused => matches!(to, Running | Exited | Removing | Dead),
                Restarting => matches!(to, Running | Exited | Removing | Dead),
                Exited => matches!(to, Running | Restarting | Removing | Dead),
                Removing => matches!(to, Dead),
                Dead => matches!(to, Removing),
                Unknown => true,
            }
    }

    /// Running now, or on its way there without anyone's help (its restart
    /// policy or a start in flight): not for the reconciler to replace.
    pub fn is_alive(self) -> bool {
        use ContainerState::*;
        match self {
            Running | Restarting | Created => true,
            Paused | Removing | Exited | Dead | Unknown => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub state: ContainerState,
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
) -> Result<String, LaunchError> {
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
        NameOwner::Us(_) | NameOwner::Foreign => {
            return Err(LaunchError::ForeignName {
                name: spec.name.clone(),
            });
        }
    }
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| LaunchError::Create {
            container: spec.name.clone(),
            message: docker_message(&e),
        })?;
    if let Err(e) = docker.start_container(&created.id, None).await {
        let _ = remove(docker, &created.id, 0).await;
        return Err(LaunchError::Start {
            container: spec.name.clone(),
            message: docker_message(&e),
        });
    }
    Ok(created.id)
}

/// The address nginx reaches a web container at, once it is running.
pub async fn address(docker: &Docker, id: &str) -> Result<Option<SocketAddr>, LaunchError> {
    published(docker, id, CONTAINER_PORT).await
}

/// Where container `port` of `id` is published on its server, if it is.
pub async fn published(
    docker: &Docker,
    id: &str,
    port: u16,
) -> Result<Option<SocketAddr>, LaunchError> {
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| LaunchError::Inspect {
            container: id.to_string(),
            message: docker_message(&e),
        })?;
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

#[cfg(test)]
mod tests {
    use super::ContainerState::{self, *};

    const ALL: [ContainerState; 8] = [
        Created, Running, Paused, Restarting, Removing, Exited, Dead, Unknown,
    ];

    #[test]
    fn container_states_follow_dockers_lifecycle() {
        let allowed = [
            (Created, Running),
            (Created, Removing),
            (Created, Dead),
            (Running, Paused),
            (Running, Restarting),
            (Running, Exited),
            (Running, Removing),
            (Running, Dead),
            (Paused, Running),
            (Paused, Exited),
            (Paused, Removing),
            (Paused, Dead),
            (Restarting, Running),
            (Restarting, Exited),
            (Restarting, Removing),
            (Restarting, Dead),
            (Exited, Running),
            (Exited, Restarting),
            (Exited, Removing),
            (Exited, Dead),
            (Removing, Dead),
            (Dead, Removing),
        ];
        for from in ALL {
            for to in ALL {
                let want =
                    from == to || to == Unknown || from == Unknown || allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), want, "{from:?} -> {to:?}");
            }
        }
        // Nothing comes back from removal.
        assert!(!Removing.can_become(Running) && !Dead.can_become(Running));
    }

    #[test]
    fn words_round_trip_and_a_new_word_is_unknown() {
        for s in ALL {
            if s != Unknown {
                assert_eq!(ContainerState::parse(s.as_str()), s);
            }
        }
        assert_eq!(ContainerState::parse("hibernating"), Unknown);
        let alive: Vec<_> = ALL.into_iter().filter(|s| s.is_alive()).collect();
        assert_eq!(alive, [Created, Running, Restarting]);
    }
}
