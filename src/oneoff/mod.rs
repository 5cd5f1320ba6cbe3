//! One-off containers: `run` (a throwaway container of the live release,
//! attached to an SSH channel or detached), `enter` (a process in a running
//! container) and the runs of scheduled jobs (`cron`).
//!
//! A one-off runs as the app's node runs: the same image, environment
//! (config vars and service addresses), network, limits and hardening,
//! copied from a running container of that node (so it lands on the server
//! the grid chose for it), or, when none runs, built from the live release
//! on the HQ. One-offs carry `quarry.oneoff` and are never part of the app's
//! state: the reconciler and the planner pass over them.
//!
//! May touch: the fleet's Docker engines (create, attach, exec, remove
//! one-off containers only), the db (read releases; `log/run/`, `cron/`).

pub mod detached;
pub mod session;
pub mod spec;

use std::collections::BTreeMap;

use bollard::models::HostConfig;
use bollard::query_parameters::InspectContainerOptions;

use crate::daemon::Daemon;
use crate::launch;
use crate::manifest::Node;
pub use spec::{Kind, OneOff, Template};

/// Why a one-off could not run.
#[derive(Debug, thiserror::Error)]
pub enum OneOffError {
    #[error("app {0} has no live release to run")]
    NoRelease(String),
    #[error("app {app} has no node {node}; its nodes are {known}")]
    NoNode {
        app: String,
        node: String,
        known: String,
    },
    #[error("app {app} has no running container {target}; see `ps {app}`")]
    NotRunning { app: String, target: String },
    #[error("{what} for app {app}: {message}")]
    Docker {
        app: String,
        what: &'static str,
        message: String,
    },
    #[error("app {app}: {message}")]
    State { app: String, message: String },
}

/// Exit code reported when a one-off was stopped (timeout, client gone).
pub const EXIT_STOPPED: i64 = 137;

fn docker_err(app: &str, what: &'static str) -> impl Fn(bollard::errors::Error) -> OneOffError {
    let app = app.to_owned();
    move |e| OneOffError::Docker {
        app: app.clone(),
        what,
        message: launch::docker_message(&e),
    }
}

/// What `node` of `app` runs with, for a one-off beside it.
pub async fn template(d: &Daemon, app: &str, node: Option<&str>) -> Result<Template, OneOffError> {
    let state = |message: String| OneOffError::State {
        app: app.to_owned(),
        message,
    };
    let release = d
        .store
        .live_release(app)
        .map_err(|e| state(e.to_string()))?
        .ok_or_else(|| OneOffError::NoRelease(app.to_owned()))?;
    let stack = crate::stack::from_release(&release).map_err(|e| state(e.0))?;
    let nodes = &stack.manifest.nodes;
    let node = node.map_or_else(|| crate::manifest::default_node(nodes), str::to_owned);
    let Some(def) = nodes.get(&node) else {
        return Err(OneOffError::NoNode {
            app: app.to_owned(),
            node,
            known: nodes.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    };
    let found = d
        .containers(Some(app))
        .await
        .map_err(|e| state(e.to_string()))?;
    let running = found.iter().find(|c| {
        c.node == node
            && c.service.is_none()
            && c.release == release.number
            && c.state == crate::launch::ContainerState::Running
    });
    let wrapper = wrapper(d, &release.image).await;
    if let Some(c) = running {
        let docker = d.docker_on(&c.server);
        let info = docker
            .inspect_container(&c.id, None::<InspectContainerOptions>)
            .await
            .map_err(docker_err(app, "cannot inspect the node's container"))?;
        let host = info.host_config.unwrap_or_default();
        let network = host
            .network_mode
            .clone()
            .filter(|m| !matches!(m.as_str(), "default" | "bridge" | "host" | "none"));
        return Ok(Template {
            server: c.server.clone(),
            image: release.image.clone(),
            release: release.number,
            node,
            env: info.config.and_then(|c| c.env).unwrap_or_default(),
            host,
            network,
            wrapper,
        });
    }
    // Nothing of the node runs (scaled to 0, a worker that crashed): the
    // release alone says what it would run with, on the HQ.
    let config = crate::cloud::Config::load(&d.store).map_err(|e| state(e.to_string()))?;
    let network = d
        .networks
        .ensure(
            &d.docker,
            &d.instance,
            crate::fleet::LOCAL,
            app,
            &config.network,
        )
        .await
        .map_err(|e| state(e.to_string()))?
        .id;
    Ok(Template {
        server: crate::fleet::LOCAL.to_owned(),
        image: release.image.clone(),
        release: release.number,
        env: release_env(app, &release, &stack.manifest, def),
        host: HostConfig {
            memory: Some(i64::from(def.memory.unwrap_or(256)) * 1024 * 1024),
            network_mode: Some(network.clone()),
            ..Default::default()
        },
        node,
        network: Some(network),
        wrapper,
    })
}

/// The environment a node container of `release` gets, with every service
/// reached by its name on the app's network.
fn release_env(
    app: &str,
    release: &crate::store::Release,
    manifest: &crate::manifest::Manifest,
    node: &Node,
) -> Vec<String> {
    let mut env: BTreeMap<String, String> = release.global_env.clone();
    env.extend(manifest.env.clone());
    env.extend(node.env.clone());
    env.extend(release.env.clone());
    for (name, service) in &manifest.services {
        let upper = name.to_uppercase().replace('-', "_");
        env.insert(format!("{upper}_HOST"), launch::service_host(app, name));
        if let Some(port) = service.port {
            env.insert(format!("{upper}_PORT"), port.to_string());
        }
    }
    env.insert("PORT".into(), launch::CONTAINER_PORT.to_string());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The buildpack stack's entrypoint when the image starts through it.
async fn wrapper(d: &Daemon, image: &str) -> Option<String> {
    let info = d.docker.inspect_image(image).await.ok()?;
    let entrypoint = info.config?.entrypoint?;
    (entrypoint == [crate::buildpack::ENTRYPOINT]).then(|| crate::buildpack::ENTRYPOINT.to_owned())
}

/// Attaches to container `id` (stdin too when `stdin`), then starts it: in
/// that order, so nothing it writes is lost.
async fn attach_and_start(
    docker: &bollard::Docker,
    app: &str,
    id: &str,
    stdin: bool,
) -> Result<bollard::container::AttachContainerResults, OneOffError> {
    let options = bollard::query_parameters::AttachContainerOptionsBuilder::default()
        .stdin(stdin)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let attach = docker
        .attach_container(id, Some(options))
        .await
        .map_err(docker_err(app, "cannot attach to the one-off container"))?;
    docker
        .start_container(id, None)
        .await
        .map_err(docker_err(app, "cannot start the one-off container"))?;
    Ok(attach)
}

/// Creates `body` as `name` on `docker`; returns its id.
async fn create(
    docker: &bollard::Docker,
    app: &str,
    name: &str,
    body: bollard::models::ContainerCreateBody,
) -> Result<String, OneOffError> {
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
        .name(name)
        .build();
    Ok(docker
        .create_container(Some(options), body)
        .await
        .map_err(docker_err(app, "cannot create the one-off container"))?
        .id)
}

/// A unique container name for a one-off of `app`: app names hold no '.'.
pub fn container_name(app: &str, kind: Kind) -> String {
    let n: u32 = rand::random_range(0..0xff_ffff);
    format!("{app}.{}.{n:06x}", kind.as_str())
}

/// A one-off container that is there now (`ps` lists them).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Running {
    pub name: String,
    pub server: String,
    pub kind: String,
    pub by: String,
    pub command: String,
    pub release: u32,
    pub status: String,
}

/// The one-offs of `app` (runs and jobs) on every server that answers.
pub async fn list(d: &Daemon, app: &str) -> Vec<Running> {
    let mut all = Vec::new();
    for (server, docker) in d.fleet.answering() {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}={}", launch::LABEL_INSTANCE, d.instance),
                format!("{}={app}", launch::LABEL_APP),
                launch::LABEL_ONEOFF.to_string(),
            ],
        )]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(found) = docker.list_containers(Some(options)).await else {
            continue;
        };
        for c in found {
            let labels = c.labels.unwrap_or_default();
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let kind = get(launch::LABEL_ONEOFF);
            // Release commands and builds are the pipeline's, shown by the push.
            if kind != Kind::Run.as_str() && kind != Kind::Cron.as_str() {
                continue;
            }
            all.push(Running {
                name: c
                    .names
                    .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_owned()))
                    .unwrap_or_default(),
                server: server.name.clone(),
                kind,
                by: get(spec::LABEL_BY),
                command: get(spec::LABEL_COMMAND),
                release: get(launch::LABEL_RELEASE).parse().unwrap_or(0),
                status: c.status.unwrap_or_default(),
            });
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}
