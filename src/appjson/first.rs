//! What app.json does on an app's first deploy (no release of it has been
//! live yet), as Heroku does when an app is set up from it: before the build,
//! config vars from `env` (defaults, generated secrets, required keys) and the
//! initial `formation`; after the release went live, `scripts.postdeploy` as
//! a detached one-off of the live release, its output in the deploy log.
//! Later deploys do not parse it; they only note that it is there.
//!
//! May touch: the pushed tree in `stacks/<app>/src` (read confined: no links,
//! size-capped), the app's config vars and formation file, its `log/`, and
//! one one-off container on the live release's server.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{AppJson, AppJsonError, Origin};
use crate::daemon::Daemon;
use crate::manifest::Command;
use crate::oneoff::{self, Kind, OneOff};
use crate::progress::Progress;
use crate::store::{Release, ReleaseStatus, Store};

/// Why app.json's first-deploy setup or its postdeploy could not be done.
#[derive(Debug, thiserror::Error)]
pub enum FirstDeployError {
    #[error(transparent)]
    AppJson(#[from] AppJsonError),
    /// A file of the app's state (`what` names it and the app).
    #[error("{what}: {source}")]
    Store { what: String, source: io::Error },
    #[error(transparent)]
    OneOff(#[from] crate::oneoff::OneOffError),
    #[error("stopped after {secs}s (timeout)")]
    TimedOut { secs: u64 },
}

/// An io error of the step `what`, for `map_err`.
fn state_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> FirstDeployError {
    let what = what.into();
    move |source| FirstDeployError::Store { what, source }
}

/// How long `scripts.postdeploy` may run.
pub const POSTDEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether no release of `app` has gone live yet (so this push sets it up).
pub fn is_first_deploy(store: &Store, app: &str) -> Result<bool, FirstDeployError> {
    let releases = store
        .releases(app)
        .map_err(state_io(format!("cannot read the releases of {app}")))?;
    Ok(!releases
        .iter()
        .any(|r| matches!(r.status, ReleaseStatus::Live | ReleaseStatus::Superseded)))
}

/// Read app.json from the unpacked push, if there is one.
pub fn read(store: &Store, app: &str) -> Result<Option<AppJson>, AppJsonError> {
    let src = store.app_dir(app).join("src");
    let bytes = crate::confined::read_file(&src, super::FILE, super::MAX_LEN)
        .map_err(|e| AppJsonError::Read(e.to_string()))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| AppJsonError::Read("app.json: not UTF-8 text".into()))?;
    super::parse(&text).map(Some)
}

/// Before the build: on the first deploy, set the config vars and formation
/// app.json asks for (and refresh the release's env snapshot); refuse the
/// push when a required key is unset. Returns the postdeploy command to run
/// once the release is live.
pub fn before_build(
    store: &Store,
    app: &str,
    release: &mut Release,
    p: &Progress,
) -> Result<Option<String>, FirstDeployError> {
    if !is_first_deploy(store, app)? {
        // Not parsed again: an app.json that a later push breaks (or one
        // pushed before Quarry read it) never refuses a redeploy.
        if crate::confined::is_file(&store.app_dir(app).join("src"), super::FILE) {
            p.detail("app.json: applied on the first deploy; not read again");
        }
        return Ok(None);
    }
    let Some(spec) = read(store, app)? else {
        return Ok(None);
    };
    p.step("Setting up from app.json (first deploy)");
    for note in &spec.notes {
        p.detail(note);
    }
    let global = store
        .global_env()
        .map_err(state_io("cannot read the global config vars"))?;
    let set = super::env_plan(
        app,
        &spec,
        |k| release.env.contains_key(k) || global.contains_key(k),
        super::new_secret,
    )?;
    for (key, value, origin) in &set {
        store
            .set_app_env(app, key, value)
            .map_err(state_io(format!("cannot set {key} from app.json")))?;
        match origin {
            Origin::Default => p.detail(format!("{key}: set from app.json's value")),
            Origin::Secret => p.detail(format!("{key}: set to a generated secret (not shown)")),
        }
        release.env.insert(key.clone(), value.clone());
    }
    if !set.is_empty() {
        let keys: Vec<&str> = set.iter().map(|(k, _, _)| k.as_str()).collect();
        store.audit_system(
            app,
            "app.json",
            &format!("config vars set: {}", keys.join(", ")),
        );
    }
    let current = store
        .formation(app)
        .map_err(state_io(format!("cannot read the formation of {app}")))?;
    if let Some(formation) = super::formation_plan(&spec, &current) {
        store
            .set_formation(app, &formation)
            .map_err(state_io("cannot set the formation from app.json"))?;
        let shown: Vec<String> = formation.iter().map(|(k, v)| format!("{k}={v}")).collect();
        p.detail(format!("formation: {}", shown.join(" ")));
    }
    store.write_release(app, release).map_err(state_io(format!(
        "cannot record release v{} of {app}",
        release.number
    )))?;
    Ok(spec.postdeploy)
}

/// After the first release went live: run `command` once as a detached
/// one-off of it, its output shown in the deploy log (`log/v<N>.log`). A failure is reported;
/// the release stays live.
pub async fn postdeploy(d: &Daemon, app: &str, number: u32, command: &str, p: &Progress) {
    p.step(format!("Running app.json's postdeploy: {command}"));
    let outcome = run(d, app, command, p).await;
    let detail = match &outcome {
        Ok(0) => "postdeploy: exit 0".to_owned(),
        Ok(code) => format!("postdeploy: exit {code}"),
        Err(e) => format!("postdeploy: could not run: {e}"),
    };
    match outcome {
        Ok(0) => p.detail("postdeploy done"),
        Ok(_) | Err(_) => p.warn(format!("{detail}; the release stays live")),
    }
    d.store.audit_system(app, "postdeploy", &detail);
    // The deploy log was written at the switch: write it again with this.
    let deploy_log = d
        .store
        .app_dir(app)
        .join("log")
        .join(format!("v{number}.log"));
    let _ = crate::store::write_atomic(&deploy_log, p.transcript().as_bytes(), 0o640);
}

async fn run(d: &Daemon, app: &str, command: &str, p: &Progress) -> Result<i64, FirstDeployError> {
    let template = oneoff::template(d, app, None).await?;
    let command = Command::Shell(command.to_owned());
    let body = oneoff::spec::body(
        &template,
        &OneOff {
            instance: &d.instance,
            app,
            kind: Kind::Run,
            command: &command,
            env: &[],
            tty: false,
            stdin: false,
            by: "postdeploy",
        },
    );
    let docker = d.docker_on(&template.server);
    let name = oneoff::container_name(app, Kind::Run);
    let log = log_path(d, app);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(state_io(format!(
            "cannot make the log dir {}",
            dir.display()
        )))?;
    }
    let before = std::fs::metadata(&log).map_or(0, |m| m.len());
    let header = format!("postdeploy v{}", template.release);
    let finished =
        oneoff::detached::run(&docker, app, &name, body, POSTDEPLOY_TIMEOUT, &log, &header).await?;
    // The log is the daemon's own file, bounded by `detached`; show this run.
    if let Ok(bytes) = std::fs::read(&log) {
        let start = usize::try_from(before).unwrap_or(0).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        p.detail(text.trim_end());
    }
    if finished.timed_out {
        return Err(FirstDeployError::TimedOut {
            secs: POSTDEPLOY_TIMEOUT.as_secs(),
        });
    }
    Ok(finished.code)
}

/// Where postdeploy's output is kept: `stacks/<app>/log/postdeploy.log`.
pub fn log_path(d: &Daemon, app: &str) -> PathBuf {
    d.store.app_dir(app).join("log").join("postdeploy.log")
}
