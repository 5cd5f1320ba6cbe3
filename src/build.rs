//! Build: turn the pushed tree into an image `quarry/<app>:v<N>`.
//!
//! A Dockerfile in the repo root is built by the Docker engine with the
//! pushed tree (a tar from `git archive`) as its context. Base images already
//! on the engine are used as they are: Quarry never forces a pull, and a
//! missing base image is named in the error. Build output streams to the
//! pusher line by line, and only its last lines are kept. Every build has
//! a deadline and resource limits; a base image may not be another app's
//! (see [`images`]). May touch: the Docker engine (build only).

mod error;
pub mod images;

pub use error::BuildError;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use crate::progress::Progress;

/// Builds in flight, held against the prune of dangling build layers. A
/// build's final image has no tag between its commit and its tagging, so a
/// prune that lists it then deletes it once it is tagged (by id, which drops
/// its one tag): the release's image is gone before its container is made.
/// Builds hold [`Gate::building`]; the prune runs only when [`Gate::idle`]
/// finds none, and new builds wait the moment it takes.
#[derive(Default)]
pub struct Gate(tokio::sync::RwLock<()>);

impl Gate {
    /// Held for the length of one build.
    pub async fn building(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.0.read().await
    }

    /// Held while dangling layers are pruned; `None` while any build runs.
    pub fn idle(&self) -> Option<tokio::sync::RwLockWriteGuard<'_, ()>> {
        self.0.try_write().ok()
    }
}

/// The image tag of release `number` of `app`.
pub fn image_tag(app: &str, number: u32) -> String {
    format!("quarry/{app}:v{number}")
}

/// The longest any build may run unless the operator sets [`MAX_BUILD_ENV`].
pub const MAX_BUILD: Duration = Duration::from_secs(30 * 60);

/// The daemon's environment may set the longest build, in seconds: the
/// default and the ceiling for quarry.yml `build.timeout`.
pub const MAX_BUILD_ENV: &str = "QUARRY_MAX_BUILD_SECONDS";

/// Memory of one build (its RUN steps or its buildpack container), bytes.
pub const BUILD_MEMORY: i64 = 2_000_000_000;

/// Processes of one buildpack build container.
pub const BUILD_PIDS: i64 = 1024;

/// CPU weight of a build: half of an app container's, so apps stay responsive.
pub const BUILD_CPU_SHARES: i64 = 512;

/// The operator's longest build.
pub fn max_build() -> Duration {
    std::env::var(MAX_BUILD_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map_or(MAX_BUILD, Duration::from_secs)
}

/// The deadline of a build: quarry.yml `build.timeout` (seconds), never
/// above the operator's maximum.
pub fn deadline(asked: Option<u32>) -> Duration {
    let max = max_build();
    asked.map_or(max, |s| Duration::from_secs(s.into()).min(max))
}

/// What a build is sent: a tar in memory (small, made here) or spooled on disk.
pub enum Context {
    Bytes(Vec<u8>),
    File(std::fs::File),
}

impl Context {
    fn chunks(
        self,
    ) -> std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
    > {
        match self {
            Context::Bytes(b) => Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from(b))])),
            Context::File(f) => {
                let file = tokio::fs::File::from_std(f);
                let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 256 * 1024];
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    buf.truncate(n);
                    Ok(Some((bytes::Bytes::from(buf), file)))
                });
                Box::pin(chunks)
            }
        }
    }
}

/// Build `context` (a tar) into `tag` within `deadline`; returns the image id.
pub async fn build_dockerfile(
    docker: &Docker,
    app: &str,
    context: Context,
    tag: &str,
    labels: HashMap<String, String>,
    progress: &Progress,
    deadline: Duration,
) -> Result<String, BuildError> {
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .memory(BUILD_MEMORY as i32)
        .memswap(BUILD_MEMORY as i32)
        .cpushares(BUILD_CPU_SHARES as i32)
        .build();
    let stream = docker.build_image(
        options,
        None,
        Some(bollard::body_try_stream(context.chunks())),
    );
    // Dropping the stream closes the connection, and the engine cancels the
    // build (its RUN container is killed).
    match tokio::time::timeout(deadline, follow(docker, stream, app, tag, progress)).await {
        Ok(result) => result,
        Err(_) => Err(BuildError::TimedOut {
            app: app.to_string(),
            secs: deadline.as_secs(),
        }),
    }
}

async fn follow(
    docker: &Docker,
    mut stream: impl futures_util::Stream<
        Item = Result<bollard::models::BuildInfo, bollard::errors::Error>,
    > + Unpin,
    app: &str,
    tag: &str,
    progress: &Progress,
) -> Result<String, BuildError> {
    let mut tail: Vec<String> = Vec::new();
    let mut image_id = None;
    let mut pending = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    pending.push_str(&text);
                    // A line without an end (`RUN yes | tr -d '\\n'`) is cut, not kept whole.
                    if pending.len() > MAX_LINE && !pending.contains('\n') {
                        let cut: String = pending.chars().take(MAX_LINE).collect();
                        pending.clear();
                        progress.detail(&cut);
                    }
                    while let Some(pos) = pending.find('\n') {
                        let line: String = pending.drain(..=pos).collect();
                        let line = line.trim_end().to_string();
                        if !line.is_empty() {
                            progress.detail(&line);
                            remember(&mut tail, line);
                        }
                    }
                }
                if let Some(status) = info.status {
                    progress.detail(&status);
                }
                if let Some(detail) = info.error_detail {
                    let message = detail
                        .message
                        .unwrap_or_else(|| "unknown build error".into());
                    return Err(BuildError::explain(app, &message));
                }
                if let Some(aux) = info.aux
                    && let Some(id) = aux.id
                {
                    image_id = Some(id);
                }
            }
            Err(e) => return Err(BuildError::explain(app, &e.to_string())),
        }
    }
    if !pending.trim().is_empty() {
        progress.detail(pending.trim_end());
    }
    match image_id {
        Some(id) => Ok(id),
        // Older engines report no aux id: ask for the tag.
        None => docker
            .inspect_image(tag)
            .await
            .ok()
            .and_then(|i| i.id)
            .ok_or_else(|| BuildError::NoImage {
                tag: tag.to_string(),
            }),
    }
}

/// Longest build output line passed on.
const MAX_LINE: usize = 4096;

fn remember(tail: &mut Vec<String>, line: String) {
    if tail.len() == 20 {
        tail.remove(0);
    }
    tail.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_prune_gate_is_shut_while_any_build_runs() {
        let gate = Gate::default();
        assert!(gate.idle().is_some(), "no build: the prune may run");
        let first = gate.building().await;
        let second = gate.building().await;
        assert!(gate.idle().is_none(), "two builds running");
        drop(first);
        assert!(gate.idle().is_none(), "one build still running");
        drop(second);
        assert!(gate.idle().is_some(), "all builds done");
    }

    #[test]
    fn missing_base_image_is_explained() {
        let e = BuildError::explain(
            "shop",
            "pull access denied for nosuch/base, repository does not exist or may require 'docker login'",
        )
        .to_string();
        assert!(
            e.starts_with(
                "build of shop failed: a base image in the Dockerfile is not on this engine"
            ),
            "{e}"
        );
        let e = BuildError::explain(
            "shop",
            "The command '/bin/sh -c false' returned a non-zero code: 1",
        )
        .to_string();
        assert_eq!(
            e,
            "build of shop failed: The command '/bin/sh -c false' returned a non-zero code: 1"
        );
    }
}
