//! The deploy pipeline, read top-down: lock → receive → build → release →
//! plan → launch → route → retire. Pushes run all of it; config changes,
//! rollbacks, restarts, scaling and domain changes enter at [`apply`], which
//! plans (pure, [`crate::plan`]) and then executes the instructions.
//!
//! The rule it keeps: until new containers answer and nginx routes to them,
//! nothing of the running release is touched. Any failure removes what the
//! attempt started, marks the release failed with the reason, and leaves the
//! previous release serving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::build;
use crate::buildpack;
use crate::daemon::Daemon;
use crate::launch::{self, ContainerSpec, Found};
use crate::manifest::{Node, NodeKind};
use crate::plan::{
    self, Current, CurrentNode, CurrentService, Desired, DesiredNode, DesiredService, Instruction,
};
use crate::progress::Progress;
use crate::receive;
use crate::route::NodeRoute;
use crate::stack::{self, Stack};
use crate::store::{self, AppStatus, KeyRecord, Release, ReleaseStatus, Role};

pub mod homes;

/// How long a second deploy of the same app waits for the first.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

/// Handle a push of `commit` to `app`: the whole pipeline. Returns the new
/// release number; an error rejects the push.
pub async fn push(
    d: &Daemon,
    app: &str,
    key: &KeyRecord,
    update: &PushUpdate<'_>,
    git_env: &BTreeMap<String, String>,
    p: &Progress,
) -> Result<u32, String> {
    let started = Instant::now();
    let lock = d.locks.acquire(&d.store, app, p, LOCK_WAIT).await?;
    let result = push_locked(d, app, key, update, git_env, p, started).await;
    // Held until git has moved the ref, after the hook returns.
    d.pushes.hold(update.token, lock);
    result
}

/// What git asked to update.
pub struct PushUpdate<'a> {
    pub old: &'a str,
    pub new: &'a str,
    pub refname: &'a str,
    /// The push's token (keeps the app locked until the push ends).
    pub token: &'a str,
}

async fn push_locked(
    d: &Daemon,
    app: &str,
    key: &KeyRecord,
    update: &PushUpdate<'_>,
    git_env: &BTreeMap<String, String>,
    p: &Progress,
    started: Instant,
) -> Result<u32, String> {
    let (commit, refname) = (update.new, update.refname);
    let repo = d.store.repo_dir(app);
    let now = receive::ref_value(&repo, refname).await;
    if now.as_deref().unwrap_or(receive::ZERO_SHA) != update.old {
        return Err(format!(
            "{refname} of {app} moved while this push waited (another push went live first); fetch, merge and push again"
        ));
    }
    let short = &commit[..7.min(commit.len())];

    // The release record comes first, so a failure anywhere after is on the books.
    let number = d
        .store
        .next_release_number(app)
        .map_err(|e| e.to_string())?;
    let image = build::image_tag(app, number);
    let mut release = Release {
        number,
        commit: commit.to_string(),
        image: image.clone(),
        env: d.store.app_env(app).map_err(|e| e.to_string())?,
        global_env: d.store.global_env().map_err(|e| e.to_string())?,
        manifest: None,
        created: store::now_rfc3339(),
        by: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
        description: format!("push {short}"),
        status: ReleaseStatus::Deploying,
        reason: None,
    };
    d.store
        .write_release(app, &release)
        .map_err(|e| e.to_string())?;

    let mut postdeploy = None;
    let result = async {
        p.step(format!("Receiving {app} at {short}"));
        let spool = d.store.app_dir(app);
        let tree =
            receive::archive(&repo, commit, git_env, &spool, receive::max_tree_bytes()).await?;
        let stack = stack::detect(&tree).map_err(|e| e.to_string())?;
        check_images(app, &stack)?;
        // Before anything is built: the domains quarry.yml asks for must be
        // free (checked again, under the same lock, when they are routed).
        let wanted: BTreeSet<String> = stack
            .manifest
            .nodes
            .values()
            .flat_map(|n| n.domains.iter().cloned())
            .collect();
        {
            let _routing = d.routing.lock().await;
            let claims = crate::domains::claims(&d.store, &d.root_domain, app)?;
            crate::domains::check(
                app,
                &d.root_domain,
                &wanted,
                &claims,
                key.role == Role::Admin,
            )
            .map_err(|e| format!("quarry.yml: {e}"))?;
        }
        release.manifest = stack.source.clone();
        d.store
            .write_release(app, &release)
            .map_err(|e| e.to_string())?;
        receive::unpack_src(&d.store, app, &tree)
            .map_err(|e| format!("cannot unpack the pushed tree: {e}"))?;
        postdeploy = crate::appjson::first::before_build(&d.store, app, &mut release, p)?;

        // Dockerfile or buildpack; a buildpack's release may add process types.
        let stack = buildpack::build_stage(d, app, key, &mut release, tree, stack, p).await?;
        p.detail(stack.describe());
        apply(d, app, &release, &stack, p).await
    }
    .await;

    finish(d, app, &mut release, result, p)?;
    if let Some(command) = postdeploy {
        crate::appjson::first::postdeploy(d, app, release.number, &command, p).await;
    }
    let keep = stack::from_release(&release).map_or(5, |s| s.manifest.releases.keep);
    let pruned = prune_images(d, app, keep as usize).await;
    if pruned > 0 {
        p.detail(format!(
            "pruned {pruned} old image(s); keeping the last {keep} releases"
        ));
    }
    if let Err(e) = receive::set_head(&repo, refname).await {
        tracing::warn!(app, "cannot point HEAD at {refname}: {e}");
    }
    p.step(format!(
        "Released v{number}: http://{}{}/ ({:.1}s)",
        d.default_domain(app),
        http_port_suffix(d),
        started.elapsed().as_secs_f64()
    ));
    Ok(number)
}

/// Services' `image:` may not be another app's release image.
fn check_images(app: &str, stack: &stack::Stack) -> Result<(), String> {
    let file = stack
        .source
        .as_ref()
        .map_or("quarry.yml", |s| s.file.as_str());
    for (name, service) in &stack.manifest.services {
        match &service.source {
            crate::manifest::ServiceSource::Image(image) => {
                build::images::check_image(app, &format!("{file}: services.{name}.image"), image)?
            }
            crate::manifest::ServiceSource::Build(_) => {}
        }
    }
    Ok(())
}

fn http_port_suffix(d: &Daemon) -> String {
    match d.router.listen().port() {
        80 => String::new(),
        port => format!(":{port}"),
    }
}

/// Record the outcome of a rollout on the release and the app.
pub fn finish(
    d: &Daemon,
    app: &str,
    release: &mut Release,
    result: Result<(), String>,
    p: &Progress,
) -> Result<(), String> {
    let log_path = d
        .store
        .app_dir(app)
        .join("log")
        .join(format!("v{}.log", release.number));
    match result {
        Ok(()) => {
            // New live first: a crash between the writes leaves two live
            // releases (start-up keeps the newest), never none.
            test_pause(d, "finish-before", release.number);
            release.status = ReleaseStatus::Live;
            d.store
                .write_release(app, release)
                .map_err(|e| e.to_string())?;
            test_pause(d, "finish-between", release.number);
            for mut old in d.store.releases(app).map_err(|e| e.to_string())? {
                if old.status == ReleaseStatus::Live && old.number != release.number {
                    old.status = ReleaseStatus::Superseded;
                    d.store
                        .write_release(app, &old)
                        .map_err(|e| e.to_string())?;
                }
            }
            d.store
                .set_status(app, AppStatus::Live)
                .map_err(|e| e.to_string())?;
            test_pause(d, "finish-after", release.number);
            let _ = store::write_atomic(&log_path, p.transcript().as_bytes(), 0o640);
            Ok(())
        }
        Err(reason) => {
            release.status = ReleaseStatus::Failed;
            release.reason = Some(reason.clone());
            let _ = d.store.write_release(app, release);
            match d.store.live_release(app).ok().flatten() {
                Some(l) => p.warn(format!(
                    "Deploy of {app} v{} failed; v{} is still serving",
                    release.number, l.number
                )),
                None => {
                    p.warn(format!("Deploy of {app} v{} failed", release.number));
                    let _ = d.store.set_status(app, AppStatus::Failed);
                }
            }
            let _ = store::write_atomic(
                &log_path,
                format!("{}{reason}\n", p.transcript()).as_bytes(),
                0o640,
            );
            Err(reason)
        }
    }
}

/// A fault-injection point for the crash tests: with `QUARRY_TEST_PAUSE`
/// set to `<point>@<release>`, the daemon writes `<data>/paused.<point>` when
/// that release reaches that point, and blocks there for good, so a test can
/// kill -9 it at exactly that moment. Unset, it costs one environment lookup.
fn test_pause(d: &Daemon, point: &str, release: u32) {
    let Some(wanted) = std::env::var_os("QUARRY_TEST_PAUSE") else {
        return;
    };
    if wanted.to_str() == Some(&format!("{point}@{release}")) {
        let _ = std::fs::write(d.store.root().join(format!("paused.{point}")), b"");
        tracing::warn!(point, release, "paused for a test (QUARRY_TEST_PAUSE)");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Remove the images of all but the last `keep` successful releases (never
/// the live one's) and this instance's dangling build layers. Returns how many
/// release images went. Failures only cost disk, so they are logged, not raised.
pub async fn prune_images(d: &Daemon, app: &str, keep: usize) -> usize {
    let Ok(releases) = d.store.releases(app) else {
        return 0;
    };
    let mut kept: BTreeSet<&str> = releases
        .iter()
        .rev()
        .filter(|r| matches!(r.status, ReleaseStatus::Live | ReleaseStatus::Superseded))
        .take(keep.max(1))
        .map(|r| r.image.as_str())
        .collect();
    kept.extend(
        releases
            .iter()
            .filter(|r| r.status == ReleaseStatus::Live)
            .map(|r| r.image.as_str()),
    );
    let doomed: BTreeSet<&str> = releases
        .iter()
        .map(|r| r.image.as_str())
        .filter(|i| !kept.contains(i))
        .collect();
    let mut removed = 0;
    // Every server that answers: images were copied or built there too.
    let engines: Vec<(String, bollard::Docker)> = d
        .fleet
        .answering()
        .into_iter()
        .map(|(s, docker)| (s.name, docker))
        .collect();
    for image in doomed {
        crate::buildpack::drop_context(d, app, image);
        for (server, docker) in &engines {
            match docker
                .remove_image(
                    image,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
            {
                Ok(_) if server == crate::fleet::LOCAL => removed += 1,
                Ok(_) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => tracing::warn!(
                    app,
                    image,
                    server,
                    "cannot prune: {}",
                    launch::docker_message(&e)
                ),
            }
        }
    }
    let filters = HashMap::from([
        ("dangling".to_string(), vec!["true".to_string()]),
        (
            "label".to_string(),
            vec![format!("{}={}", launch::LABEL_INSTANCE, d.instance)],
        ),
    ]);
    let options = bollard::query_parameters::PruneImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    if let Err(e) = d.docker.prune_images(Some(options)).await {
        tracing::warn!(
            app,
            "cannot prune build layers: {}",
            launch::docker_message(&e)
        );
    }
    removed
}

/// Memory a node container takes on the grid when quarry.yml sets none (MiB).
pub const DEFAULT_SLICE_MIB: u64 = 256;

/// The grid size (MiB) of every app's nodes in its live release, read once
/// for a whole view of the fleet.
pub struct SliceSizes(HashMap<String, BTreeMap<String, u64>>);

impl SliceSizes {
    pub fn load(d: &Daemon) -> Result<SliceSizes, String> {
        let mut sizes = HashMap::new();
        for app in d.store.apps().map_err(|e| e.to_string())? {
            if let Some(live) = d.store.live_release(&app).map_err(|e| e.to_string())?
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
) -> Result<(crate::grid::Grid, Vec<String>), String> {
    let mut grid = d.fleet.grid()?;
    grid.set_options(options);
    let sizes = SliceSizes::load(d)?;
    let mut warnings = Vec::new();
    for c in d.containers(None).await? {
        if c.state != "running" {
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
pub async fn persist_grid(d: &Daemon) -> Result<(crate::grid::Grid, Vec<String>), String> {
    let config = crate::cloud::Config::load(&d.store)?;
    let (grid, warnings) = occupied_grid(d, config.grid.options()).await?;
    store::write_json(&d.store.root().join("grid").join("grid.json"), &grid, 0o644)
        .map_err(|e| e.to_string())?;
    Ok((grid, warnings))
}

// ----- desired and current state -------------------------------------------

/// Nodes with their effective scale (`ps:scale` over quarry.yml) and domains.
pub fn desired(d: &Daemon, app: &str, release: &Release, stack: &Stack) -> Result<Desired, String> {
    let formation = d.store.formation(app).map_err(|e| e.to_string())?;
    let extra = d.store.domains(app).map_err(|e| e.to_string())?;
    let stopped = d.store.status(app) == AppStatus::Disabled;
    let main = main_web_node(stack);
    let mut nodes = BTreeMap::new();
    for (name, node) in &stack.manifest.nodes {
        let mut domains = BTreeSet::new();
        if node.kind == NodeKind::Web {
            domains.extend(node.domains.iter().cloned());
            if main.as_deref() == Some(name.as_str()) {
                domains.insert(d.default_domain(app));
                domains.extend(extra.iter().cloned());
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
            },
        );
    }
    Ok(Desired {
        app: app.to_string(),
        release: release.number,
        services,
        nodes,
    })
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

/// What runs now, asked of the engine; plus the domains last routed.
pub async fn current(d: &Daemon, app: &str) -> Result<(Current, Vec<Found>), String> {
    let found = d.containers(Some(app)).await?;
    let routed: BTreeMap<String, BTreeSet<String>> =
        store::read_json(&d.store.app_dir(app).join("routed.json"))
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
    let mut current = Current::default();
    for c in &found {
        if let Some(service) = &c.service {
            // One on a draining server is to be moved: as if it were gone.
            if !d.server_running(&c.server) {
                continue;
            }
            current.services.insert(
                service.clone(),
                CurrentService {
                    spec_hash: c.spec.clone().unwrap_or_default(),
                    container: c.name.clone(),
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
            });
        node.release = node.release.min(c.release);
        node.containers.push(c.name.clone());
        current.release = Some(current.release.map_or(c.release, |r: u32| r.max(c.release)));
    }
    // Nodes routed but with no containers (scaled to zero) keep their domains.
    for (node, domains) in routed {
        current.nodes.entry(node).or_insert_with(|| CurrentNode {
            release: 0,
            containers: Vec::new(),
            domains,
        });
    }
    Ok((current, found))
}

/// Rewrite `app`'s routes from the containers that run now (after a restart
/// of Quarry, their addresses may have changed).
pub async fn reroute(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
) -> Result<(), String> {
    let desired = desired(d, app, release, stack)?;
    let (_, found) = current(d, app).await?;
    let p = Progress::silent();
    let mut run = Execution::new(d, app, release, stack, &desired, &p);
    run.switch_route(&found).await
}

// ----- apply -------------------------------------------------------------------

/// Bring `app` to `release` with `stack`: plan, print the plan, execute it.
pub async fn apply(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
    p: &Progress,
) -> Result<(), String> {
    apply_restarting(d, app, release, stack, None, p).await
}

/// [`apply`], and also replace every container of `restart` (a rolling
/// restart of one node under the same release).
pub async fn apply_restarting(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
    restart: Option<&str>,
    p: &Progress,
) -> Result<(), String> {
    let desired = desired(d, app, release, stack)?;
    let (current, found) = current(d, app).await?;
    let mut instructions = plan::plan(&desired, &current);
    if let Some(node) = restart {
        let scale = desired.nodes.get(node).map_or(0, |n| n.scale);
        let planned = instructions
            .iter()
            .any(|i| matches!(i, Instruction::Deploy { node: n, .. } if n == node));
        if scale > 0 && !planned {
            // Boot before routes and kills, like any deploy.
            let at = instructions
                .iter()
                .position(|i| matches!(i, Instruction::Route { .. } | Instruction::Kill { .. }))
                .unwrap_or(instructions.len());
            instructions.retain(|i| !matches!(i, Instruction::Scale { node: n, .. } if n == node));
            let at = at.min(instructions.len());
            instructions.insert(
                at,
                Instruction::Deploy {
                    node: node.to_string(),
                    release: release.number,
                    scale,
                },
            );
        }
    }
    let plan_path = d.store.app_dir(app).join("build").join("plan.json");
    store::write_json(&plan_path, &instructions, 0o644).map_err(|e| e.to_string())?;
    p.step("Plan");
    p.detail(plan::render(&instructions));
    let _rollout = d.cloud.rollout();
    let mut run = Execution::new(d, app, release, stack, &desired, p);
    let result = execute_or_undo(&mut run, &instructions, &found).await;
    // Only a plan that did something can have moved a slice.
    if !instructions.is_empty()
        && let Err(e) = persist_grid(d).await
    {
        tracing::warn!(app, "cannot write grid/grid.json: {e}");
    }
    result
}

/// Run the plan; on failure, route back and remove what this attempt started.
async fn execute_or_undo(
    run: &mut Execution<'_>,
    instructions: &[Instruction],
    found: &[Found],
) -> Result<(), String> {
    match run.execute(instructions, found).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let started = std::mem::take(&mut run.started);
            if run.routed {
                // Batches already switched: give the route back to the old
                // containers, which kept running, before removing the new.
                run.retire.clear();
                run.p
                    .warn("rolling back: routing to the previous containers again");
                if let Err(back) = run.switch_route(found).await {
                    run.p.warn(format!("cannot route back: {back}"));
                }
            }
            let jobs = started.iter().map(|s| launch::remove(&s.docker, &s.id, 0));
            futures_util::future::join_all(jobs).await;
            Err(e)
        }
    }
}

/// `CACHE` for service `cache`: the prefix of its `_HOST`/`_PORT` variables.
fn env_prefix(service: &str) -> String {
    service.to_uppercase().replace('-', "_")
}

/// A container this attempt started.
struct Started {
    id: String,
    node: String,
    /// The engine of the server it runs on.
    docker: bollard::Docker,
    /// The name it was created with, and the one it takes once the old
    /// container is gone (the same for a scale-up).
    booted_as: String,
    final_name: String,
    address: Option<std::net::SocketAddr>,
}

struct Execution<'a> {
    d: &'a Daemon,
    app: &'a str,
    release: &'a Release,
    stack: &'a Stack,
    desired: &'a Desired,
    p: &'a Progress,
    started: Vec<Started>,
    /// Old containers to stop once the route no longer points at them.
    retire: Vec<Found>,
    /// Where containers are, built on first need and kept current as this
    /// execution places new ones.
    grid: Option<crate::grid::Grid>,
    /// Whether nginx was switched before the end (batched rollouts): a
    /// failure then routes back to the old containers.
    routed: bool,
    /// Where each running service is: its server, and its port as
    /// published on that server's address (for nodes on other servers).
    services: BTreeMap<String, ServiceAt>,
}

/// A running service's place in the fleet.
#[derive(Debug, Clone)]
struct ServiceAt {
    server: String,
    published: Option<std::net::SocketAddr>,
}

impl<'a> Execution<'a> {
    fn new(
        d: &'a Daemon,
        app: &'a str,
        release: &'a Release,
        stack: &'a Stack,
        desired: &'a Desired,
        p: &'a Progress,
    ) -> Execution<'a> {
        Execution {
            d,
            app,
            release,
            stack,
            desired,
            p,
            started: Vec::new(),
            retire: Vec::new(),
            grid: None,
            routed: false,
            services: BTreeMap::new(),
        }
    }

    async fn execute(
        &mut self,
        instructions: &[Instruction],
        found: &[Found],
    ) -> Result<(), String> {
        let d = self.d;
        let network = self.network_on(crate::fleet::LOCAL).await?;
        self.locate_services(found).await;
        // The release command runs once, when a new release rolls out — not
        // when an already-live release is restored or rescaled — after the
        // services are up, before any node.
        let deploys = instructions
            .iter()
            .any(|i| matches!(i, Instruction::Deploy { .. }));
        let new_release = self.release.status == ReleaseStatus::Deploying;
        let mut release_cmd = match &self.stack.manifest.release {
            Some(cmd) if deploys && new_release => Some(cmd.clone()),
            _ => None,
        };
        let mut route = false;
        for ins in instructions {
            if !matches!(ins, Instruction::Ensure { .. })
                && let Some(cmd) = release_cmd.take()
            {
                self.release_command(&cmd, &network).await?;
            }
            match ins {
                Instruction::Ensure {
                    service,
                    image,
                    spec_hash,
                } => {
                    self.ensure(service, image, spec_hash, &network, found)
                        .await?
                }
                Instruction::Deploy {
                    node,
                    release,
                    scale,
                } => {
                    self.deploy_node(node, *release, *scale, &network, found)
                        .await?;
                    route = true;
                }
                Instruction::Scale { node, from, to } => {
                    self.p.step(format!("Scaling {node} {from} -> {to}"));
                    let live: Vec<&Found> = found
                        .iter()
                        .filter(|c| &c.node == node && c.is_steady() && d.server_running(&c.server))
                        .collect();
                    // Containers on a draining server are replaced elsewhere.
                    self.retire.extend(
                        found
                            .iter()
                            .filter(|c| {
                                &c.node == node
                                    && c.service.is_none()
                                    && !d.server_running(&c.server)
                            })
                            .cloned(),
                    );
                    let have: BTreeSet<u32> = live.iter().map(|c| c.index).collect();
                    for index in 1..=*to {
                        if !have.contains(&index) {
                            let name = format!("{}.{node}.{index}", self.app);
                            self.boot(node, index, &name, &network).await?;
                        }
                    }
                    self.retire
                        .extend(live.iter().filter(|c| c.index > *to).map(|c| (*c).clone()));
                    route = true;
                }
                Instruction::Route { .. } => route = true,
                Instruction::Kill { container } => {
                    if let Some(c) = found.iter().find(|c| &c.name == container) {
                        if c.service.is_some() {
                            self.p.step(format!(
                                "Stopping service container {container} (its volumes are kept)"
                            ));
                            launch::remove(&d.docker_on(&c.server), &c.id, 10).await?;
                        } else {
                            self.retire.push(c.clone());
                        }
                    }
                }
            }
        }
        if let Some(cmd) = release_cmd.take() {
            self.release_command(&cmd, &network).await?;
        }
        let deployed: BTreeSet<&str> = instructions
            .iter()
            .filter_map(|i| match i {
                Instruction::Deploy { node, .. } => Some(node.as_str()),
                _ => None,
            })
            .collect();
        if self.relink(found, &deployed, &network).await? {
            route = true;
        }
        if route {
            self.switch_route(found).await?;
        }
        test_pause(d, "routed", self.release.number);
        self.retire_old().await;
        Ok(())
    }

    /// The id of the app's network on `server`, made on first need.
    async fn network_on(&self, server: &str) -> Result<String, String> {
        let d = self.d;
        let config = crate::cloud::Config::load(&d.store)?;
        let docker = d.docker_on(server);
        let net = d
            .networks
            .ensure(&docker, &d.instance, server, self.app, &config.network)
            .await?;
        Ok(net.id)
    }

    /// Whether a service on `server` must publish its port: only when
    /// another server could run a node that reaches it there.
    fn published_needed(&self, server: &str) -> bool {
        self.d
            .fleet
            .list()
            .iter()
            .any(|s| s.name != server && s.state == crate::fleet::ServerState::Running)
    }

    /// Digest of the service addresses a node container on `server` gets.
    fn links(&self, env: &BTreeMap<String, String>) -> String {
        let mut text = String::new();
        for name in self.stack.manifest.services.keys() {
            let upper = env_prefix(name);
            for key in [format!("{upper}_HOST"), format!("{upper}_PORT")] {
                let value = env.get(&key).map_or("", String::as_str);
                text.push_str(&format!("{key}={value}\n"));
            }
        }
        plan::short_digest(&text)
    }

    /// Replace the running node containers (of nodes this plan does not
    /// deploy) whose service addresses are out of date — a service moved to
    /// another server — one by one, beside the old ones. Returns whether any
    /// was replaced.
    async fn relink(
        &mut self,
        found: &[Found],
        deployed: &BTreeSet<&str>,
        network: &str,
    ) -> Result<bool, String> {
        if self.stack.manifest.services.is_empty() {
            return Ok(false);
        }
        let retired: BTreeSet<String> = self.retire.iter().map(|c| c.id.clone()).collect();
        let stale: Vec<Found> = found
            .iter()
            .filter(|c| {
                c.service.is_none()
                    && c.state == "running"
                    && c.is_steady()
                    && !deployed.contains(c.node.as_str())
                    && !retired.contains(&c.id)
                    && self.d.server_running(&c.server)
            })
            .filter(|c| {
                let Some(def) = self.stack.manifest.nodes.get(&c.node) else {
                    return false;
                };
                let want = self.links(&self.node_env(Some(def), &c.server));
                c.links.as_ref().is_some_and(|have| *have != want)
            })
            .cloned()
            .collect();
        if stale.is_empty() {
            return Ok(false);
        }
        self.p.step(format!(
            "A service moved: replacing {} container(s) that knew its old address",
            stale.len()
        ));
        for c in stale {
            let temp = format!(
                "{}.{}.{}.v{}",
                self.app, c.node, c.index, self.release.number
            );
            self.boot(&c.node, c.index, &temp, network).await?;
            self.retire.push(c);
        }
        Ok(true)
    }

    /// Record where the app's running services are.
    async fn locate_services(&mut self, found: &[Found]) {
        for c in found.iter().filter(|c| c.state == "running") {
            let Some(service) = &c.service else { continue };
            let Some(def) = self.stack.manifest.services.get(service) else {
                continue;
            };
            let published = match def.port {
                Some(port) => launch::published(&self.d.docker_on(&c.server), &c.id, port)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            // Services placed before the record existed get one here.
            homes::record(
                &self.d.store,
                self.app,
                service,
                homes::Home {
                    server: c.server.clone(),
                    published,
                },
            );
            self.services.insert(
                service.clone(),
                ServiceAt {
                    server: c.server.clone(),
                    published,
                },
            );
        }
    }

    async fn release_command(
        &mut self,
        cmd: &crate::manifest::Command,
        network: &str,
    ) -> Result<(), String> {
        let d = self.d;
        self.p.step("Running the release command");
        let spec = ContainerSpec {
            name: format!("{}.release.v{}", self.app, self.release.number),
            image: self.release.image.clone(),
            app: self.app.to_string(),
            node: "release".into(),
            index: 0,
            release: self.release.number,
            env: self.node_env(None, crate::fleet::LOCAL),
            command: Some(cmd.clone()),
            memory: None,
            publish_on: None,
            service_port: None,
            network: Some(network.to_string()),
            aliases: Vec::new(),
            volumes: Vec::new(),
            labels: BTreeMap::from([(launch::LABEL_ONEOFF.to_string(), "release".to_string())]),
            restart: false,
        };
        let (code, logs) =
            launch::run_once(&d.docker, &d.instance, &spec, Duration::from_secs(600)).await?;
        for line in &logs {
            self.p.detail(line);
        }
        if code != 0 {
            return Err(format!(
                "the release command of {} exited with code {code}",
                self.app
            ));
        }
        Ok(())
    }

    /// Environment of a node container on `server`: global < quarry.yml <
    /// node < config vars, plus every service's address: its name on the
    /// app's network when it runs on the same server, else its published
    /// address on its own server.
    fn node_env(&self, node: Option<&Node>, server: &str) -> BTreeMap<String, String> {
        let mut env = self.release.global_env.clone();
        env.extend(self.stack.manifest.env.clone());
        if let Some(n) = node {
            env.extend(n.env.clone());
        }
        env.extend(self.release.env.clone());
        for (name, service) in &self.stack.manifest.services {
            let upper = env_prefix(name);
            let elsewhere = self
                .services
                .get(name)
                .filter(|at| at.server != server)
                .and_then(|at| at.published);
            match elsewhere {
                Some(addr) => {
                    env.insert(format!("{upper}_HOST"), addr.ip().to_string());
                    env.insert(format!("{upper}_PORT"), addr.port().to_string());
                }
                None => {
                    env.insert(
                        format!("{upper}_HOST"),
                        launch::service_host(self.app, name),
                    );
                    if let Some(port) = service.port {
                        env.insert(format!("{upper}_PORT"), port.to_string());
                    }
                }
            }
        }
        env
    }

    async fn ensure(
        &mut self,
        service: &str,
        image: &str,
        spec_hash: &str,
        network: &str,
        found: &[Found],
    ) -> Result<(), String> {
        let d = self.d;
        let def = &self.stack.manifest.services[service];
        if let Some(c) = found.iter().find(|c| c.service.as_deref() == Some(service))
            && c.spec.as_deref() == Some(spec_hash)
            && c.state == "running"
            && d.server_running(&c.server)
            && def.port.is_none_or(|_| {
                let published = self
                    .services
                    .get(service)
                    .is_some_and(|at| at.published.is_some());
                published == self.published_needed(&c.server)
            })
        {
            let network = if c.server == crate::fleet::LOCAL {
                network.to_string()
            } else {
                self.network_on(&c.server).await?
            };
            let aliases = [launch::service_host(self.app, service)];
            return launch::attach(&d.docker_on(&c.server), &c.id, &network, &aliases).await;
        }
        // A service stays on its server (its volumes live there); a new one,
        // or one the operator moves off its server, is placed by the grid;
        // one whose server does not answer waits for it if it has data.
        let old = found
            .iter()
            .find(|c| c.service.as_deref() == Some(service))
            .cloned();
        let home = homes::read(&d.store, self.app).remove(service);
        let (server, docker) = match old.as_ref().filter(|c| d.server_running(&c.server)) {
            Some(c) => d
                .fleet
                .get(&c.server)
                .ok_or_else(|| format!("server {} vanished", c.server))?,
            None => {
                let state = home
                    .as_ref()
                    .map(|h| d.fleet.get(&h.server).map(|(s, _)| s.state));
                match homes::placement(!def.volumes.is_empty(), state) {
                    homes::Placement::Wait => {
                        let home = home.expect("only a recorded service waits");
                        self.p.warn(homes::degraded_line(service, &home.server));
                        self.services.insert(
                            service.to_string(),
                            ServiceAt {
                                server: home.server,
                                published: home.published,
                            },
                        );
                        return Ok(());
                    }
                    homes::Placement::Home => {
                        let at = &home.as_ref().expect("only a recorded one").server;
                        d.fleet
                            .get(at)
                            .ok_or_else(|| format!("server {at} vanished"))?
                    }
                    homes::Placement::Anywhere => {
                        let group = format!("{}.{service}", self.app);
                        self.place(&group, &group, def.memory, &def.placement.labels)
                            .await?
                    }
                }
            }
        };
        self.p.step(format!("Starting service {service} ({image})"));
        if let crate::manifest::ServiceSource::Build(dir) = &def.source {
            self.build_service(dir, image).await?;
        }
        if let Some(c) = old.as_ref().filter(|c| c.server != server.name) {
            let _ = launch::remove(&d.docker_on(&c.server), &c.id, 10).await;
        }
        let was_on = old
            .map(|c| c.server)
            .or(home.map(|h| h.server))
            .filter(|s| *s != server.name);
        if let Some(was_on) = was_on
            && !def.volumes.is_empty()
        {
            let moved = format!(
                "service {service} moved from server {was_on} to {}: it starts with empty volumes; the old data stays on {was_on} (see volumes {})",
                server.name, self.app
            );
            self.p.warn(&moved);
            d.store.audit_system(self.app, "moved", &moved);
        }
        let local = server.name == crate::fleet::LOCAL;
        let network = if local {
            network.to_string()
        } else {
            self.ship_image(&server.name, &docker, image).await?;
            self.network_on(&server.name).await?
        };
        let name = format!("{}.{service}", self.app);
        let volumes = def
            .volumes
            .iter()
            .enumerate()
            .map(|(i, path)| (launch::volume_name(self.app, service, i + 1), path.clone()))
            .collect();
        let spec = ContainerSpec {
            name: name.clone(),
            image: image.to_string(),
            app: self.app.to_string(),
            node: service.to_string(),
            index: 0,
            release: 0,
            env: def.env.clone(),
            command: def.command.clone(),
            memory: def.memory,
            // Published on its server's address only for nodes on other servers.
            publish_on: def
                .port
                .filter(|_| self.published_needed(&server.name))
                .map(|_| server.address.clone()),
            service_port: def.port,
            network: Some(network.clone()),
            aliases: vec![launch::service_host(self.app, service)],
            volumes,
            labels: BTreeMap::from([
                (launch::LABEL_SERVICE.to_string(), service.to_string()),
                (launch::LABEL_SPEC.to_string(), spec_hash.to_string()),
            ]),
            restart: true,
        };
        let id = launch::start(&docker, &d.instance, &spec).await?;
        let published = match def.port {
            Some(port) => launch::published(&docker, &id, port).await?,
            None => None,
        };
        if let Some(port) = def.port {
            let at = if local { None } else { published };
            launch::wait_tcp_ready(&docker, &id, &network, port, at, Duration::from_secs(60))
                .await
                .map_err(|nr| not_ready(self.app, service, nr, self.p))?;
            self.p.detail(format!(
                "{service} accepts connections on port {port} (server {})",
                server.name
            ));
        }
        homes::record(
            &d.store,
            self.app,
            service,
            homes::Home {
                server: server.name.clone(),
                published,
            },
        );
        self.services.insert(
            service.to_string(),
            ServiceAt {
                server: server.name.clone(),
                published,
            },
        );
        Ok(())
    }

    async fn build_service(&self, dir: &str, image: &str) -> Result<(), String> {
        let d = self.d;
        let app_dir = d.store.app_dir(self.app);
        let (src, rel, app) = (app_dir.join("src"), dir.to_string(), self.app.to_string());
        // The checkout is the pushed tree: walked without following a link,
        // so a `build:` folder that is (or holds) a symlink cannot put a
        // host folder into the context.
        let context = tokio::task::spawn_blocking(move || -> Result<std::fs::File, String> {
            let spool = tempfile::tempfile_in(&app_dir).map_err(|e| e.to_string())?;
            let mut out = std::io::BufWriter::new(spool);
            crate::confined::tar_dir(&src, &rel, &mut out, receive::max_tree_bytes())
                .map_err(|e| e.to_string())?;
            let mut file = out.into_inner().map_err(|e| e.to_string())?;
            std::io::Seek::rewind(&mut file).map_err(|e| e.to_string())?;
            let path = format!("{rel}/Dockerfile");
            let dockerfile = crate::confined::read_file(&src, &path, 1 << 20)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            crate::build::images::check_dockerfile(
                &app,
                &path,
                &String::from_utf8_lossy(&dockerfile),
            )?;
            Ok(file)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("service build directory {dir}: {e}"))?;
        let labels = HashMap::from([(launch::LABEL_INSTANCE.to_string(), d.instance.clone())]);
        build::build_dockerfile(
            &d.docker,
            self.app,
            build::Context::File(context),
            image,
            labels,
            self.p,
            build::deadline(self.stack.manifest.build.timeout),
        )
        .await
        .map(|_| ())
    }

    /// Roll `node` over to `release`: all at once, or `deploy.batch`
    /// containers at a time. Each batch boots beside the old containers and
    /// takes over their share of the route; the old ones keep running until
    /// the whole node is done, so a failing batch routes back to them.
    async fn deploy_node(
        &mut self,
        node: &str,
        release: u32,
        scale: u32,
        network: &str,
        found: &[Found],
    ) -> Result<(), String> {
        let web = self.stack.manifest.nodes[node].kind == NodeKind::Web;
        let batch = self
            .stack
            .manifest
            .deploy
            .batch
            .unwrap_or(scale)
            .clamp(1, scale.max(1));
        let batches = scale.div_ceil(batch);
        let old: Vec<Found> = found
            .iter()
            .filter(|c| c.node == node && c.service.is_none())
            .cloned()
            .collect();
        for (n, first) in (1..=scale).step_by(batch as usize).enumerate() {
            let last = (first + batch - 1).min(scale);
            if batches > 1 {
                self.p.step(format!(
                    "Starting {node} {first}-{last} of {scale} (v{release}, batch {}/{batches})",
                    n + 1
                ));
            } else {
                self.p
                    .step(format!("Starting {node} x{scale} (v{release})"));
            }
            for index in first..=last {
                let temp = format!("{}.{node}.{index}.v{release}", self.app);
                self.boot(node, index, &temp, network).await?;
            }
            self.retire.extend(
                old.iter()
                    .filter(|c| (first..=last).contains(&c.index))
                    .cloned(),
            );
            // Every batch but the last switches now; the last one switches
            // with the rest of the plan.
            if web && n + 1 < batches as usize {
                self.switch_route(found).await?;
                self.routed = true;
            }
        }
        for c in old {
            if !self.retire.iter().any(|r| r.id == c.id) {
                self.retire.push(c);
            }
        }
        Ok(())
    }

    /// Pick the server for a new container of `node` (best fit, replicas
    /// spread, label constraints), through the grid.
    async fn place(
        &mut self,
        group: &str,
        name: &str,
        memory: Option<u32>,
        labels: &crate::grid::Labels,
    ) -> Result<(crate::fleet::Server, bollard::Docker), String> {
        use crate::grid::{GridError, SliceSpec};
        let d = self.d;
        if self.grid.is_none() {
            let config = crate::cloud::Config::load(&d.store)?;
            self.grid = Some(occupied_grid(d, config.grid.options()).await?.0);
        }
        let size = memory.map_or(DEFAULT_SLICE_MIB, u64::from);
        let mut slice = SliceSpec::new(format!("{name}@new"), group, size);
        slice.labels = labels.clone();
        let mut grown = false;
        let server = loop {
            let grid = self.grid.as_mut().expect("built above");
            match grid.place(std::slice::from_ref(&slice)) {
                Ok(placed) => {
                    break placed
                        .first()
                        .map(|p| p.block.to_string())
                        .ok_or("the grid placed nothing")?;
                }
                // Full: the grid asks for a server; the provider answers.
                Err(GridError::NoFit(nofit)) if !grown && nofit.event.is_some() => {
                    let event = nofit.event.clone().expect("checked");
                    let known: Vec<String> = grid.blocks().map(|b| b.id.clone()).collect();
                    let new = crate::cloud::grow(d, &event, &known, self.p)
                        .await
                        .map_err(|e| format!("cannot place {group}: {nofit}; {e}"))?;
                    let mut block = crate::grid::Block::new(new.name.clone(), new.memory.max(1));
                    block.labels = new.labels.clone();
                    block.pinned = new.origin.is_none();
                    grid.add_block(block).map_err(|e| e.to_string())?;
                    grown = true;
                }
                Err(e) => return Err(format!("cannot place {group}: {e}")),
            }
        };
        d.fleet
            .get(&server)
            .ok_or_else(|| format!("server {server} vanished"))
    }

    /// Put `image` (a release's or a service's) on another server's engine,
    /// the first time that server needs it: a buildpack app's release image
    /// is built there from its kept context (the stack travels once per
    /// server); any other image travels whole (docker save → load).
    async fn ship_image(
        &self,
        server: &str,
        docker: &bollard::Docker,
        image: &str,
    ) -> Result<(), String> {
        let d = self.d;
        if docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        if let Some(done) =
            crate::buildpack::remote_build(d, self.app, image, docker, server, self.p).await?
        {
            self.p.detail(format!("on server {server}: {done}"));
        } else if crate::fleet::ensure_image(&d.docker, docker, image).await? {
            self.p.detail(format!("copied {image} to server {server}"));
        }
        Ok(())
    }

    /// Start one container of `node` and wait until it is ready.
    async fn boot(
        &mut self,
        node: &str,
        index: u32,
        name: &str,
        network: &str,
    ) -> Result<(), String> {
        let d = self.d;
        let def = &self.stack.manifest.nodes[node];
        let web = def.kind == NodeKind::Web;
        let group = format!("{}.{node}", self.app);
        let (server, docker) = self
            .place(&group, name, def.memory, &def.placement.labels)
            .await?;
        let mut spec = ContainerSpec {
            name: name.to_string(),
            image: self.release.image.clone(),
            app: self.app.to_string(),
            node: node.to_string(),
            index,
            release: self.release.number,
            env: self.node_env(Some(def), &server.name),
            command: def.command.clone(),
            memory: def.memory,
            publish_on: web.then(|| server.address.clone()),
            service_port: None,
            network: Some(network.to_string()),
            aliases: Vec::new(),
            volumes: Vec::new(),
            labels: BTreeMap::new(),
            restart: true,
        };
        spec.labels
            .insert(launch::LABEL_LINKS.to_string(), self.links(&spec.env));
        // The name this container will take must be ours to take.
        let final_name = format!("{}.{node}.{index}", self.app);
        match launch::owner(&docker, &final_name).await {
            launch::NameOwner::Free => {}
            launch::NameOwner::Us(instance) if instance == d.instance => {}
            _ => {
                return Err(format!(
                    "on server {}: {}",
                    server.name,
                    launch::foreign_name(&final_name)
                ));
            }
        }
        if server.name != crate::fleet::LOCAL {
            spec.network = Some(self.network_on(&server.name).await?);
            self.ship_image(&server.name, &docker, &self.release.image)
                .await?;
        }
        let id = launch::start(&docker, &d.instance, &spec).await?;
        self.started.push(Started {
            id: id.clone(),
            node: node.to_string(),
            docker: docker.clone(),
            booted_as: name.to_string(),
            final_name: format!("{}.{node}.{index}", self.app),
            address: None,
        });
        let label = format!("{node}.{index}");
        if web {
            let check = launch::ReadyCheck::from_manifest(def.healthcheck.as_ref());
            let host = self.desired.nodes[node]
                .domains
                .iter()
                .next()
                .cloned()
                .unwrap_or_else(|| d.default_domain(self.app));
            let addr = launch::wait_ready(&docker, &id, &host, &check)
                .await
                .map_err(|nr| not_ready(self.app, &label, nr, self.p))?;
            self.p.detail(format!("{label} answers on {addr}"));
            if let Some(s) = self.started.last_mut() {
                s.address = Some(addr);
            }
        } else {
            launch::wait_stays_up(&docker, &id, Duration::from_secs(2))
                .await
                .map_err(|nr| not_ready(self.app, &label, nr, self.p))?;
            self.p.detail(format!("{label} is running"));
        }
        Ok(())
    }

    /// Route every web node to its containers as they will be after this
    /// change: the new ones, and the old ones that are not retired.
    async fn switch_route(&mut self, found: &[Found]) -> Result<(), String> {
        let d = self.d;
        let retired: BTreeSet<&str> = self.retire.iter().map(|c| c.id.as_str()).collect();
        let mut routes = Vec::new();
        let mut routed = BTreeMap::new();
        for (name, node) in &self.desired.nodes {
            if node.kind != NodeKind::Web || node.domains.is_empty() {
                continue;
            }
            let mut upstreams: Vec<_> = found
                .iter()
                .filter(|c| {
                    &c.node == name
                        && c.service.is_none()
                        && c.state == "running"
                        && !retired.contains(c.id.as_str())
                })
                .filter(|c| c.is_steady())
                .filter_map(|c| c.address)
                .collect();
            upstreams.extend(
                self.started
                    .iter()
                    .filter(|s| &s.node == name)
                    .filter_map(|s| s.address),
            );
            routes.push(NodeRoute {
                node: name.clone(),
                domains: node.domains.iter().cloned().collect(),
                upstreams,
            });
            routed.insert(name.clone(), node.domains.clone());
        }
        self.p.step("Routing");
        // From the check until routed.json says so, no other app may route.
        let _routing = d.routing.lock().await;
        let wanted: BTreeSet<String> = routes.iter().flat_map(|r| r.domains.clone()).collect();
        let claims = crate::domains::claims(&d.store, &d.root_domain, self.app)?;
        crate::domains::check(self.app, &d.root_domain, &wanted, &claims, true)
            .map_err(|e| format!("routing {} refused: {e}", self.app))?;
        d.router
            .set_app(self.app, &routes)
            .await
            .map_err(|e| format!("routing {} failed: {e}", self.app))?;
        for r in &routes {
            self.p.detail(format!(
                "{} → {} container(s)",
                r.domains.join(", "),
                r.upstreams.len()
            ));
        }
        store::write_json(
            &d.store.app_dir(self.app).join("routed.json"),
            &routed,
            0o644,
        )
        .map_err(|e| e.to_string())
    }

    /// Stop what the route no longer uses, then give new containers their names.
    async fn retire_old(&mut self) {
        let d = self.d;
        if !self.retire.is_empty() {
            self.p
                .step(format!("Stopping {} old container(s)", self.retire.len()));
            let grace = self.stack.manifest.deploy.drain as i32;
            let jobs = self.retire.iter().map(|c| async move {
                launch::remove(&d.docker_on(&c.server), &c.id, grace).await
            });
            for r in futures_util::future::join_all(jobs).await {
                if let Err(e) = r {
                    self.p.warn(e);
                }
            }
        }
        for s in self.started.iter().filter(|s| s.booted_as != s.final_name) {
            if let Err(e) = launch::rename(&s.docker, &s.id, &s.final_name).await {
                self.p.warn(e);
            }
        }
    }
}

fn not_ready(app: &str, label: &str, nr: launch::NotReady, p: &Progress) -> String {
    if !nr.logs.is_empty() {
        p.warn(format!("last log lines of {app}.{label}:"));
        for line in &nr.logs {
            p.warn(format!("  {line}"));
        }
    }
    format!("{app}.{label} did not start: {}", nr.reason)
}
