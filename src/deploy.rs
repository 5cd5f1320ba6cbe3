//! The deploy pipeline, read top-down: lock → receive → build → release →
//! launch → route → retire. Used by pushes and, from `rollout` on, by every
//! change that makes a new release (config changes, rollbacks, restarts).
//!
//! The rule it keeps: until the new containers answer and nginx routes to
//! them, nothing of the running release is touched. Any failure removes what
//! the attempt started, marks the release failed with the reason, and leaves
//! the previous release serving.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::build;
use crate::daemon::Daemon;
use crate::launch::{self, ContainerSpec};
use crate::progress::Progress;
use crate::receive;
use crate::route::NodeRoute;
use crate::stack::{self, NodeSpec, Stack};
use crate::store::{self, AppStatus, KeyRecord, Release, ReleaseStatus};

/// How long a second deploy of the same app waits for the first.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// Handle a push of `commit` to `app`: the whole pipeline. Returns the new
/// release number; an error rejects the push.
pub async fn push(
    d: &Daemon,
    app: &str,
    key: &KeyRecord,
    commit: &str,
    refname: &str,
    git_env: &BTreeMap<String, String>,
    p: &Progress,
) -> Result<u32, String> {
    let started = Instant::now();
    let _lock = d.locks.acquire(&d.store, app, p, LOCK_WAIT).await?;
    let repo = d.store.repo_dir(app);

    // receive
    p.step(format!(
        "Receiving {app} at {}",
        &commit[..7.min(commit.len())]
    ));
    let tree = receive::archive(&repo, commit, git_env).await?;
    let stack = stack::detect(&tree).map_err(|e| e.to_string())?;
    p.detail(stack.describe());

    // release record first, so a failure anywhere after is on the books
    let number = d
        .store
        .next_release_number(app)
        .map_err(|e| e.to_string())?;
    let image = build::image_tag(app, number);
    let mut release = Release {
        number,
        commit: commit.to_string(),
        image: image.clone(),
        env: release_env(d, app)?,
        manifest: stack.source.clone(),
        created: store::now_rfc3339(),
        by: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
        description: format!("push {}", &commit[..7.min(commit.len())]),
        status: ReleaseStatus::Deploying,
        reason: None,
    };
    d.store
        .write_release(app, &release)
        .map_err(|e| e.to_string())?;

    let result = async {
        receive::unpack_src(&d.store, app, &tree)
            .map_err(|e| format!("cannot unpack the pushed tree: {e}"))?;
        // build
        p.step(format!("Building {image} from the Dockerfile"));
        let labels = HashMap::from([
            (launch::LABEL_INSTANCE.to_string(), d.instance.clone()),
            (launch::LABEL_APP.to_string(), app.to_string()),
            (launch::LABEL_RELEASE.to_string(), number.to_string()),
        ]);
        build::build_dockerfile(&d.docker, app, tree, &image, labels, p).await?;
        // launch, route, retire
        rollout(d, app, &release, &stack, p).await
    }
    .await;

    finish(d, app, &mut release, result, p)?;
    if let Err(e) = receive::set_head(&repo, refname).await {
        tracing::warn!(app, "cannot point HEAD at {refname}: {e}");
    }
    p.step(format!(
        "Released v{number}: http://{}{} ({:.1}s)",
        d.default_domain(app),
        http_port_suffix(d),
        started.elapsed().as_secs_f64()
    ));
    Ok(number)
}

fn http_port_suffix(d: &Daemon) -> String {
    match d.router.listen().port() {
        80 => String::new(),
        port => format!(":{port}"),
    }
}

/// Config vars of a new release: global env, then the app's own.
pub fn release_env(d: &Daemon, app: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = d.store.global_env().map_err(|e| e.to_string())?;
    env.extend(d.store.app_env(app).map_err(|e| e.to_string())?);
    Ok(env)
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
            for mut old in d.store.releases(app).map_err(|e| e.to_string())? {
                if old.status == ReleaseStatus::Live && old.number != release.number {
                    old.status = ReleaseStatus::Superseded;
                    d.store
                        .write_release(app, &old)
                        .map_err(|e| e.to_string())?;
                }
            }
            release.status = ReleaseStatus::Live;
            d.store
                .write_release(app, release)
                .map_err(|e| e.to_string())?;
            d.store
                .set_status(app, AppStatus::Live)
                .map_err(|e| e.to_string())?;
            let _ = store::write_atomic(&log_path, p.transcript().as_bytes(), 0o640);
            Ok(())
        }
        Err(reason) => {
            release.status = ReleaseStatus::Failed;
            release.reason = Some(reason.clone());
            let _ = d.store.write_release(app, release);
            let live = d.store.live_release(app).ok().flatten();
            p.warn(format!("Deploy of {app} v{} failed", release.number));
            match &live {
                Some(l) => p.warn(format!("v{} is still serving", l.number)),
                None => {
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

/// Boot `release` beside what runs, check it, switch the route, retire the
/// old containers. On error everything this call started is removed again.
pub async fn rollout(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
    p: &Progress,
) -> Result<(), String> {
    let before = launch::list(&d.docker, &d.instance, Some(app)).await?;
    let mut started: Vec<(NodeSpec, u32, String)> = Vec::new();
    let result = boot_all(d, app, release, stack, p, &mut started).await;
    let routes = match result {
        Ok(routes) => routes,
        Err(e) => {
            cleanup(d, &started).await;
            return Err(e);
        }
    };
    p.step("Routing");
    if let Err(e) = d.router.set_app(app, &routes).await {
        cleanup(d, &started).await;
        return Err(format!("routing {app} failed: {e}"));
    }
    for r in &routes {
        if !r.domains.is_empty() {
            p.detail(format!(
                "{} → {} container(s)",
                r.domains.join(", "),
                r.upstreams.len()
            ));
        }
    }
    // retire: every older container of the app, concurrently, with a drain
    let new_ids: Vec<&str> = started.iter().map(|(_, _, id)| id.as_str()).collect();
    let old: Vec<_> = before
        .into_iter()
        .filter(|c| !new_ids.contains(&c.id.as_str()))
        .collect();
    if !old.is_empty() {
        p.step(format!("Stopping {} old container(s)", old.len()));
        let grace = stack.drain_seconds as i32;
        let jobs = old.iter().map(|c| launch::remove(&d.docker, &c.id, grace));
        for r in futures_util::future::join_all(jobs).await {
            if let Err(e) = r {
                p.warn(e);
            }
        }
    }
    for (node, index, id) in &started {
        let name = format!("{app}.{}.{index}", node.name);
        if let Err(e) = launch::rename(&d.docker, id, &name).await {
            p.warn(e);
        }
    }
    Ok(())
}

/// Boot every node's containers and wait until each is ready; returns the
/// routes to switch to.
async fn boot_all(
    d: &Daemon,
    app: &str,
    release: &Release,
    stack: &Stack,
    p: &Progress,
    started: &mut Vec<(NodeSpec, u32, String)>,
) -> Result<Vec<NodeRoute>, String> {
    let mut routes = Vec::new();
    for node in &stack.nodes {
        if node.scale == 0 {
            continue;
        }
        p.step(format!(
            "Starting {} x{} (v{})",
            node.name, node.scale, release.number
        ));
        let mut env = stack.env.clone();
        env.extend(release.env.clone());
        let mut upstreams = Vec::new();
        let mut ids = Vec::new();
        for index in 1..=node.scale {
            let spec = ContainerSpec {
                name: format!("{app}.{}.{index}.v{}", node.name, release.number),
                image: release.image.clone(),
                app: app.to_string(),
                node: node.name.clone(),
                index,
                release: release.number,
                env: env.clone(),
                command: node.command.clone(),
                memory: node.memory,
                publish_on: node.web.then(|| d.publish_address.clone()),
            };
            let id = launch::start(&d.docker, &d.instance, &spec).await?;
            started.push((node.clone(), index, id.clone()));
            ids.push((index, id));
        }
        for (index, id) in ids {
            let label = format!("{}.{index}", node.name);
            if node.web {
                let host = d.default_domain(app);
                match launch::wait_http_ready(&d.docker, &id, &host, "/", node.ready_timeout).await
                {
                    Ok(addr) => {
                        p.detail(format!("{label} answers on {addr}"));
                        upstreams.push(addr);
                    }
                    Err(nr) => return Err(not_ready(app, &label, nr, p)),
                }
            } else {
                launch::wait_stays_up(&d.docker, &id, Duration::from_secs(2))
                    .await
                    .map_err(|nr| not_ready(app, &label, nr, p))?;
                p.detail(format!("{label} is running"));
            }
        }
        if node.web {
            let mut domains = node.domains.clone();
            if node.name == "web" || stack.nodes.iter().filter(|n| n.web).count() == 1 {
                domains.insert(0, d.default_domain(app));
            }
            domains.dedup();
            routes.push(NodeRoute {
                node: node.name.clone(),
                domains,
                upstreams,
            });
        }
    }
    Ok(routes)
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

async fn cleanup(d: &Daemon, started: &[(NodeSpec, u32, String)]) {
    let jobs = started
        .iter()
        .map(|(_, _, id)| launch::remove(&d.docker, id, 0));
    futures_util::future::join_all(jobs).await;
}
