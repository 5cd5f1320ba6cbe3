//! Build: turn the pushed tree into an image `quarry/<app>:v<N>`.
//!
//! A Dockerfile in the repo root is built by the Docker engine with the
//! pushed tree (a tar from `git archive`) as its context. Base images already
//! on the engine are used as they are: Quarry never forces a pull, and a
//! missing base image is named in the error. Build output streams to the
//! pusher line by line. May touch: the Docker engine (build only).

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use crate::progress::Progress;

/// The image tag of release `number` of `app`.
pub fn image_tag(app: &str, number: u32) -> String {
    format!("quarry/{app}:v{number}")
}

/// Build `context` (a tar) into `tag`; returns the image id.
pub async fn build_dockerfile(
    docker: &Docker,
    app: &str,
    context: Vec<u8>,
    tag: &str,
    labels: HashMap<String, String>,
    progress: &Progress,
) -> Result<String, String> {
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let mut stream = docker.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    let mut tail: Vec<String> = Vec::new();
    let mut image_id = None;
    let mut pending = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    pending.push_str(&text);
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
                    return Err(explain_build_error(app, &message));
                }
                if let Some(aux) = info.aux
                    && let Some(id) = aux.id
                {
                    image_id = Some(id);
                }
            }
            Err(e) => return Err(explain_build_error(app, &e.to_string())),
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
            .ok_or_else(|| format!("the build of {tag} finished but produced no image")),
    }
}

fn remember(tail: &mut Vec<String>, line: String) {
    if tail.len() == 20 {
        tail.remove(0);
    }
    tail.push(line);
}

/// Make the engine's terse errors say what to do.
fn explain_build_error(app: &str, message: &str) -> String {
    let m = message.trim();
    if m.contains("pull access denied")
        || m.contains("failed to resolve")
        || m.contains("no such host")
        || m.contains("connection refused") && m.contains("registry")
        || m.contains("manifest unknown")
        || m.contains("i/o timeout") && m.contains("registry")
    {
        format!(
            "build of {app} failed: a base image in the Dockerfile is not on this engine and no registry could provide it ({m}); build or load it locally (docker build / docker load) and push again"
        )
    } else {
        format!("build of {app} failed: {m}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_base_image_is_explained() {
        let e = explain_build_error(
            "shop",
            "pull access denied for nosuch/base, repository does not exist or may require 'docker login'",
        );
        assert!(
            e.starts_with(
                "build of shop failed: a base image in the Dockerfile is not on this engine"
            ),
            "{e}"
        );
        let e = explain_build_error(
            "shop",
            "The command '/bin/sh -c false' returned a non-zero code: 1",
        );
        assert_eq!(
            e,
            "build of shop failed: The command '/bin/sh -c false' returned a non-zero code: 1"
        );
    }
}
