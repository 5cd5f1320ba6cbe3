//! Desired and current: what the live release and the db ask for (nodes,
//! services, scale, domains, slice sizes), and what the engines run, by
//! label. The grid snapshot of what is placed where. Reads only.

use super::*;

/// Why desired or current state could not be read. The messages are the
/// underlying ones (users see them as they were); the variant says where.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An app's records in the data dir.
    #[error("{source}")]
    Store { app: String, source: std::io::Error },
    /// The list of apps.
    #[error("{0}")]
    Apps(std::io::Error),
    /// A file of the data dir (routed domains, the grid snapshot).
    #[error("{source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] launch::LaunchError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The app's default domain (no name checked at the edge fails this).
    #[error(transparent)]
    Name(#[from] crate::validate::Invalid),
}

/// Memory a node container takes on the grid when quarry.yml sets none (MiB).
pub const DEFAULT_SLICE_MIB: u64 = 256;

/// The grid size (MiB) of every app's nodes in its live release, read once
/// for a whole view of the fleet.
pub struct SliceSizes(HashMap<String, BTreeMap<String, u64>>);

impl SliceSizes {
    pub fn load(d: &Daemon) -> Result<SliceSizes, StateError> {
        let mut sizes = HashMap::new();
        for app in d.store.apps().map_err(StateError::Apps)? {
            let live = d
                .store
                .live_release(&app)
                .map_err(|source| StateError::Store {
                    app: app.clone(),
                    source,
                })?;
            if let Some(live) = live
                && let Ok(stack) = stack::from_release(&live)
            {
                let nodes = stack
                    .manifest
                    .nodes
                    .iter()
                    .map(|(n, node)| (n.clone(), node.memory.map_or(DEFAULT_SLICE_MIB, u64::from)))
                    .collect();
                sizes.insert(app, nodes);
            }
        }
        Ok(SliceSizes(sizes))
    }

    /// A running container's size: its node's memory in the live release.
    pub fn of(&self, c: &Found) -> u64 {
        self.0
            .get(&c.app)
            .and_then(|m| m.get(&c.node))
            .copied()
            .unwrap_or(DEFAULT_SLICE_MIB)
    }
}

/// The grid of the fleet as it is: one block per server (in its state), and
/// every running container (nodes and services, whatever the app) recorded
/// where it runs. Also returns what could not be recorded (an overfull
/// server, say): what runs is a fact, so that is a warning, not an error.
pub async fn occupied_grid(
    d: &Daemon,
    options: crate::grid::Options,
) -> Result<(crate::grid::Grid, Vec<String>), StateError> {
    let mut grid = d.fleet.grid()?;
    grid.set_options(options);
    let sizes = SliceSizes::load(d)?;
    let mut warnings = Vec::new();
    for c in d.containers(None).await? {
        if c.state != crate::launch::ContainerState::Running {
            continue;
        }
        let group = format!("{}.{}", c.app, c.node);
        let size = sizes.of(&c);
        // A name is on two servers only mid-move: keep both apart.
        let id = if grid.slice(&c.name).is_some() {
            format!("{}@{}", c.name, c.server)
        } else {
            c.name.clone()
        };
        let slice = crate::grid::SliceSpec::new(id, group, size);
        if let Err(e) = grid.record(slice, &c.server) {
            warnings.push(e.to_string());
        }
    }
    Ok((grid, warnings))
}

/// Write the allocation as it is now to `grid/grid.json`.
pub async fn persist_grid(d: &Daemon) -> Result<(crate::grid::Grid, Vec<String>), StateError> {
    let config = crate::cloud::Config::load(&d.store)?;
    let (grid, warnings) = occupied_grid(d, config.grid.options()).await?;
    let path = d.store.root().join("grid").join("grid.json");
    store::write_json(&path, &grid, 0o644).map_err(|source| StateError::File { path, source })?;
    Ok((grid, warnings))
}

/// Nodes with their effective scale (`ps:scale` over quarry.yml) and domains.
pub fn desired(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
) -> Result<Desired, StateError> {
    let records = |source| StateError::Store {
        app: app.to_string(),
        source,
    };
    let formation = d.store.formation(app).map_err(records)?;
    let extra = d.store.domains(app).map_err(records)?;
    let stopped = d.store.status(app) == AppStatus::Disabled;
    let main = main_web_node(stack);
    let mut nodes = BTreeMap::new();
    for (name, node) in &stack.manifest.nodes {
        let mut domains = BTreeSet::new();
        if node.kind == NodeKind::Web {
            domains.extend(node.domains.iter().cloned());
            if main.as_deref() == Some(name.as_str()) {
                domains.insert(d.default_domain(app)?);
                // The store lists only the lines that are domains.
                domains.extend(extra.iter().filter_map(|x| Domain::parse(x).ok()));
            }
        }
        let scale = if stopped {
            0
        } else {
            formation.get(name).copied().unwrap_or(node.scale)
        };
        nodes.insert(
            name.clone(),
            DesiredNode {
                kind: node.kind,
                scale,
                domains,
            },
        );
    }
    let mut services = BTreeMap::new();
    for (name, service) in &stack.manifest.services {
        let image = match &service.source {
            crate::manifest::ServiceSource::Image(i) => i.clone(),
            crate::manifest::ServiceSource::Build(_) => {
                format!("quarry/{app}/{name}:{}", plan::spec_hash(service))
            }
        };
        services.insert(
            name.clone(),
            DesiredService {
                image,
                spec_hash: plan::spec_hash(service),
                port: service.port,
                waiting: None,
            },
        );
    }
    let homes = homes::read(&d.store, app);
    for (name, server) in waiting_services(d, app, stack) {
        if let Some(want) = services.get_mut(&name) {
            let published = homes.get(&name).and_then(|h| h.published);
            want.waiting = Some(plan::ServiceAt { server, published });
        }
    }
    let servers = d
        .fleet
        .list()
        .into_iter()
        .filter(|s| s.state == crate::fleet::ServerState::Running)
        .map(|s| s.name)
        .collect();
    // Only a release rolling out for the first time runs its command: not
    // one restored by a rollback or rescaled.
    let release_command = match &stack.manifest.release {
        Some(cmd) if release.status == ReleaseStatus::Deploying => Some(command_text(cmd)),
        Some(_) | None => None,
    };
    Ok(Desired {
        app: app.to_string(),
        release: release.number,
        services,
        nodes,
        release_command,
        restart: None,
        servers,
    })
}

/// A command as the user wrote it (without the stack's entrypoint that
/// buildpack apps run it through).
fn command_text(cmd: &crate::manifest::Command) -> String {
    use crate::manifest::Command;
    let argv = match cmd {
        Command::Shell(line) => return line.clone(),
        Command::Exec(argv) => argv,
    };
    match argv.as_slice() {
        [entry, sh, c, line]
            if entry == crate::stackimage::ENTRYPOINT && sh == "/bin/sh" && c == "-c" =>
        {
            line.clone()
        }
        [entry, rest @ ..] if entry == crate::stackimage::ENTRYPOINT => shell_words::join(rest),
        all => shell_words::join(all),
    }
}

/// The services of `app` (in `stack`) that wait for a server that does not
/// answer, each with that server.
pub fn waiting_services(d: &Daemon, app: &str, stack: &Stack) -> Vec<(String, String)> {
    let services = stack
        .manifest
        .services
        .iter()
        .map(|(name, s)| (name.clone(), !s.volumes.is_empty()))
        .collect();
    homes::waiting(&d.store, &d.fleet, app, &services)
}

/// The web node that answers at `<app>.<root domain>`: `web`, else the first web node.
pub fn main_web_node(stack: &Stack) -> Option<String> {
    let nodes = &stack.manifest.nodes;
    if nodes.get("web").is_some_and(|n| n.kind == NodeKind::Web) {
        return Some("web".into());
    }
    nodes
        .iter()
        .find(|(_, n)| n.kind == NodeKind::Web)
        .map(|(k, _)| k.clone())
}

/// What runs now, asked of the engine (services with the port they publish
/// for the ports `stack` gives them); plus the domains last routed.
pub async fn current(
    d: &Daemon,
    app: &str,
    stack: &Stack,
) -> Result<(Current, Vec<Found>), StateError> {
    let found = d.containers(Some(app)).await?;
    let path = d.store.app_dir(app).join("routed.json");
    let routed: BTreeMap<String, BTreeSet<Domain>> = store::read_json(&path)
        .map_err(|source| StateError::File { path, source })?
        .unwrap_or_default();
    let mut current = Current::default();
    for c in &found {
        if let Some(service) = &c.service {
            // One on a draining server is to be moved: as if it were gone.
            if !d.server_running(&c.server) {
                continue;
            }
            let port = stack.manifest.services.get(service).and_then(|s| s.port);
            let published = match port {
                Some(port) if c.state == crate::launch::ContainerState::Running => {
                    launch::published(&d.docker_on(&c.server), &c.id, port)
                        .await
                        .ok()
                        .flatten()
                }
                Some(_) | None => None,
            };
            current.services.insert(
                service.clone(),
                CurrentService {
                    spec_hash: c.spec.clone().unwrap_or_default(),
                    container: c.name.clone(),
                    at: plan::ServiceAt {
                        server: c.server.clone(),
                        published,
                    },
                },
            );
            continue;
        }
        // A container of another attempt (named `.vN`) is not the app's
        // state, nor is one on a server being drained: it is to be replaced.
        if !c.is_steady() || !d.server_running(&c.server) {
            continue;
        }
        let node = current
            .nodes
            .entry(c.node.clone())
            .or_insert_with(|| CurrentNode {
                release: c.release,
                containers: Vec::new(),
                domains: routed.get(&c.node).cloned().unwrap_or_default(),
                linked: BTreeMap::new(),
            });
        node.release = node.release.min(c.release);
        node.containers.push(c.name.clone());
        if let Some(digest) = &c.links
            && c.state == crate::launch::ContainerState::Running
        {
            let linked = plan::Linked {
                server: c.server.clone(),
                digest: digest.clone(),
            };
            node.linked.insert(c.name.clone(), linked);
        }
        current.release = Some(current.release.map_or(c.release, |r: u32| r.max(c.release)));
    }
    // Nodes routed but with no containers (scaled to zero) keep their domains.
    for (node, domains) in routed {
        current.nodes.entry(node).or_insert_with(|| CurrentNode {
            release: 0,
            containers: Vec::new(),
            domains,
            linked: BTreeMap::new(),
        });
    }
    Ok((current, found))
}
