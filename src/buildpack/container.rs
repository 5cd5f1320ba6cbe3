//! The build container: the buildpack's detect, compile and release in one
//! throwaway container from the stack image, as uid 65000, with BUILD and
//! CACHE (one mount: /tmp/tree/build, /tmp/tree/cache), ENV and the buildpack mounted; its output streams to the pusher. May
//! touch: the Docker engine (that one container).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;

use super::{BUILD_UID, BuildpackError, Work};
use crate::daemon::Daemon;
use crate::launch;
use crate::progress::Progress;
use crate::stackimage::pass_through;
use crate::store::Release;

/// The daemon's proxy settings, passed to build containers when set.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Runs in the build container: detect, compile, release, with markers in
/// /tmp/out so Quarry can tell which step failed. Fixed text: nothing of the
/// user's reaches a shell line.
const BUILD_SCRIPT: &str = r#"set -e
if ! /buildpack/bin/detect /tmp/tree/build >/tmp/out/detect; then
  : >/tmp/out/not-detected
  exit 1
fi
/buildpack/bin/compile /tmp/tree/build /tmp/tree/cache /tmp/env
: >/tmp/out/compiled
/buildpack/bin/release /tmp/tree/build >/tmp/out/release.yml
"#;

/// detect + compile + release in a throwaway container from the stack,
/// as [`BUILD_UID`], streaming its output to the pusher.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_build_container(
    d: &Daemon,
    app: &str,
    release: &Release,
    (name, buildpack): (&str, &Path),
    work: &Work,
    (stack_image, runtime_env): (&str, Vec<String>),
    deadline: Duration,
    p: &Progress,
) -> Result<(), BuildpackError> {
    let docker = &d.docker;
    let container = format!("{app}.build.v{}", release.number);
    match launch::owner(docker, &container).await {
        launch::NameOwner::Free => {}
        launch::NameOwner::Us(i) if i == d.instance => {
            launch::remove(docker, &container, 0).await?
        }
        launch::NameOwner::Us(_) | launch::NameOwner::Foreign => {
            return Err(BuildpackError::Foreign(launch::foreign_name(&container)));
        }
    }
    // Mounts, not `-v` strings: a path with ':' or ',' stays one path.
    let bind = |from: &Path, to: &str, ro: bool| Mount {
        source: Some(from.display().to_string()),
        target: Some(to.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(ro),
        ..Default::default()
    };
    let mounts = vec![
        // BUILD and CACHE in one mount: the buildpack may rename and
        // hard-link between them (restoring cached dependencies without a copy).
        bind(&work.tree(), "/tmp/tree", false),
        bind(&work.env(), "/tmp/env", true),
        bind(&work.out(), "/tmp/out", false),
        bind(buildpack, "/buildpack", true),
    ];
    let labels = HashMap::from([
        (launch::LABEL_INSTANCE.to_string(), d.instance.clone()),
        (launch::LABEL_APP.to_string(), app.to_string()),
        (launch::LABEL_ONEOFF.to_string(), "build".to_string()),
    ]);
    let mut env = vec![
        format!("STACK={stack_image}"),
        format!("SOURCE_VERSION={}", release.commit),
        "HOME=/app".to_string(),
        "LANG=C.UTF-8".to_string(),
    ];
    // The runtime chosen for the app (QUARRY_PYTHON: which interpreter).
    env.extend(runtime_env);
    // A daemon that reaches the internet through a proxy passes it on, so
    // pip and npm can download too.
    for key in PROXY_VARS {
        if let Ok(value) = std::env::var(key) {
            env.push(format!("{key}={value}"));
        }
    }
    let body = ContainerCreateBody {
        image: Some(stack_image.to_string()),
        user: Some(format!("{BUILD_UID}:{BUILD_UID}")),
        env: Some(env),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![BUILD_SCRIPT.to_string(), "quarry-build".to_string()]),
        working_dir: Some("/tmp/tree/build".into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            // The engine's default bridge: the build downloads what it
            // needs, but the apps' network (their services) is out of reach
            // of the build's code.
            network_mode: Some("bridge".into()),
            init: Some(true),
            memory: Some(crate::build::BUILD_MEMORY),
            memory_swap: Some(crate::build::BUILD_MEMORY),
            pids_limit: Some(crate::build::BUILD_PIDS),
            cpu_shares: Some(crate::build::BUILD_CPU_SHARES),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&container)
        .build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| BuildpackError::Container {
            what: "create",
            container: container.clone(),
            reason: launch::docker_message(&e),
        })?;
    let id = created.id;
    let result = async {
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| BuildpackError::Container {
                what: "start",
                container: container.clone(),
                reason: launch::docker_message(&e),
            })?;
        tokio::time::timeout(deadline, follow(docker, &id, p))
            .await
            .map_err(|_| BuildpackError::TimedOut {
                app: app.to_string(),
                secs: deadline.as_secs(),
            })
    }
    .await;
    let code = match result {
        Ok(tail) => {
            let code = crate::launch::exit_code(docker, &id).await;
            (code, tail)
        }
        Err(e) => {
            let _ = launch::remove(docker, &id, 0).await;
            return Err(e);
        }
    };
    let _ = launch::remove(docker, &id, 0).await;
    let (code, tail) = code;
    if code == 0 {
        return Ok(());
    }
    if !tail.is_empty() {
        p.warn("last lines of the build:");
        for line in &tail {
            p.warn(format!("  {line}"));
        }
    }
    let out = work.out();
    let buildpack = name.to_string();
    Err(if out.join("not-detected").exists() {
        BuildpackError::NotApplicable { buildpack }
    } else {
        let script = if out.join("compiled").exists() {
            "release"
        } else {
            "compile"
        };
        BuildpackError::ScriptFailed {
            buildpack,
            script,
            code,
        }
    })
}

/// Longest output line passed on.
const MAX_LINE: usize = 4096;

/// Stream the container's output to the pusher until it exits; returns the last lines.
async fn follow(docker: &bollard::Docker, id: &str, p: &Progress) -> Vec<String> {
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut tail: Vec<String> = Vec::new();
    let mut pending = String::new();
    let line_out = |line: &str, tail: &mut Vec<String>| {
        let line = line.trim_end();
        pass_through(p, line);
        if tail.len() == 15 {
            tail.remove(0);
        }
        tail.push(line.to_string());
    };
    while let Some(Ok(chunk)) = stream.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        while let Some(pos) = pending.find('\n') {
            let line: String = pending.drain(..=pos).collect();
            line_out(&line, &mut tail);
        }
        // Output without line ends is passed on in pieces, never kept whole.
        if pending.len() > MAX_LINE {
            let cut: String = pending.chars().take(MAX_LINE).collect();
            pending.clear();
            line_out(&cut, &mut tail);
        }
    }
    if !pending.trim().is_empty() {
        line_out(&pending, &mut tail);
    }
    tail
}
