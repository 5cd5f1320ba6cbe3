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

use tracing::Instrument;

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
use crate::validate::Domain;

mod destroy;
mod drain;
mod error;
mod execute;
pub mod homes;
mod prune;
mod releases;
pub mod scale;
mod state;

pub use destroy::{Destroyed, destroy};
pub use drain::{drain, reapply};
pub use error::DeployError;
pub use execute::{apply, apply_restarting, reroute};
pub use prune::prune_images;
pub use releases::{RollbackError, rerelease, rollback, rollback_target};
pub use state::*;

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
) -> Result<u32, DeployError> {
    let started = Instant::now();
    // Every event of the push carries the app and, once it has one, the
    // release (journal fields APP and RELEASE under systemd).
    let span = tracing::info_span!("deploy", app, release = tracing::field::Empty);
    let lock = d
        .locks
        .acquire(&d.store, app, p, LOCK_WAIT)
        .instrument(span.clone())
        .await?;
    let result = push_locked(d, app, key, update, git_env, p, started)
        .instrument(span)
        .await;
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
) -> Result<u32, DeployError> {
    let (commit, refname) = (update.new, update.refname);
    let repo = d.store.repo_dir(app);
    let now = receive::ref_value(&repo, refname).await;
    if now.as_deref().unwrap_or(receive::ZERO_SHA) != update.old {
        return Err(DeployError::Moved {
            refname: refname.to_string(),
            app: app.to_string(),
        });
    }
    let short = &commit[..7.min(commit.len())];

    // The release record comes first, so a failure anywhere after is on the books.
    let number = d.store.next_release_number(app)?;
    let image = build::image_tag(app, number);
    let mut release = Release {
        number,
        commit: commit.to_string(),
        image: image.clone(),
        env: d.store.app_env(app)?,
        global_env: d.store.global_env()?,
        manifest: None,
        created: store::now_rfc3339(),
        by: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
        description: format!("push {short}"),
        status: ReleaseStatus::Deploying,
        reason: None,
    };
    d.store.write_release(app, &release)?;

    tracing::Span::current().record("release", number);
    tracing::info!(commit = short, by = %key.name, "deploy started");
    let mut postdeploy = None;
    let result = async {
        p.step(format!("Receiving {app} at {short}"));
        let spool = d.store.app_dir(app);
        let tree =
            receive::archive(&repo, commit, git_env, &spool, receive::max_tree_bytes()).await?;
        let stack = stack::detect(&tree)?;
        check_images(app, &stack)?;
        // Before anything is built: the domains quarry.yml asks for must be
        // free (checked again, under the same lock, when they are routed).
        let wanted: BTreeSet<String> = stack
            .manifest
            .nodes
            .values()
            .flat_map(|n| n.domains.iter().map(|d| d.to_string()))
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
            .map_err(DeployError::Domains)?;
        }
        release.manifest = stack.source.clone();
        d.store.write_release(app, &release)?;
        receive::unpack_src(&d.store, app, &tree).map_err(DeployError::Unpack)?;
        postdeploy = crate::appjson::first::before_build(&d.store, app, &mut release, p)?;

        // Dockerfile or buildpack; a buildpack's release may add process types.
        let stack = buildpack::build_stage(d, app, key, &mut release, tree, stack, p).await?;
        p.detail(stack.describe());
        apply(d, app, &release, &stack, p).await
    }
    .await;

    if let Err(e) = finish(d, app, &mut release, result, p) {
        tracing::warn!("deploy failed: {e}");
        return Err(e);
    }
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
        d.default_domain(app)?,
        http_port_suffix(d),
        started.elapsed().as_secs_f64()
    ));
    tracing::info!(seconds = started.elapsed().as_secs(), "release live");
    Ok(number)
}

/// Services' `image:` may not be another app's release image.
fn check_images(app: &str, stack: &stack::Stack) -> Result<(), DeployError> {
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
    result: Result<(), DeployError>,
    p: &Progress,
) -> Result<(), DeployError> {
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
            d.store.write_release(app, release)?;
            test_pause(d, "finish-between", release.number);
            for mut old in d.store.releases(app)? {
                if old.status == ReleaseStatus::Live && old.number != release.number {
                    old.status = ReleaseStatus::Superseded;
                    d.store.write_release(app, &old)?;
                }
            }
            d.store.set_status(app, AppStatus::Live)?;
            test_pause(d, "finish-after", release.number);
            let _ = store::write_atomic(&log_path, p.transcript().as_bytes(), 0o640);
            Ok(())
        }
        Err(reason) => {
            release.status = ReleaseStatus::Failed;
            release.reason = Some(reason.to_string());
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
