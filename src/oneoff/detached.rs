//! A one-off that nobody is attached to (`run --detach`, scheduled jobs):
//! its output is kept as a bounded tail in a log file of the app, and it is
//! stopped at its deadline and removed when it ends.
//!
//! May touch: one engine (the container it creates), the log file it is given.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use futures_util::StreamExt;

use super::{EXIT_STOPPED, OneOffError};

/// Output kept of one run; older output is dropped from the front.
pub const TAIL_BYTES: usize = 64 * 1024;
/// A log file keeps the last runs up to this size.
pub const LOG_BYTES: usize = 256 * 1024;

/// How a detached run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code, or [`EXIT_STOPPED`] when the deadline stopped it.
    pub code: i64,
    pub timed_out: bool,
    pub duration: Duration,
}

/// Create `body` as `name`, let it run to its end (or `deadline`), append its
/// output to `log` under `header`, remove it.
pub async fn run(
    docker: &Docker,
    app: &str,
    name: &str,
    body: ContainerCreateBody,
    deadline: Duration,
    log: &Path,
    header: &str,
) -> Result<Finished, OneOffError> {
    let id = super::create(docker, app, name, body).await?;
    let began = Instant::now();
    let result = watched(docker, app, &id, deadline).await;
    let _ = crate::launch::remove(docker, &id, 0).await;
    let (finished, tail) = result?;
    let finished = Finished {
        duration: began.elapsed(),
        ..finished
    };
    let summary = if finished.timed_out {
        format!("stopped after {}s (timeout)", deadline.as_secs())
    } else {
        format!(
            "exit {} after {:.1}s",
            finished.code,
            finished.duration.as_secs_f64()
        )
    };
    append_log(log, &format!("=== {header}: {summary}\n"), &tail);
    Ok(finished)
}

async fn watched(
    docker: &Docker,
    app: &str,
    id: &str,
    deadline: Duration,
) -> Result<(Finished, Vec<u8>), OneOffError> {
    let mut attach = super::attach_and_start(docker, app, id, false).await?;
    let mut tail = Vec::new();
    let collect = async {
        while let Some(Ok(item)) = attach.output.next().await {
            let bytes = match item {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => message,
                LogOutput::StdIn { .. } => continue,
            };
            keep_tail(&mut tail, &bytes, TAIL_BYTES);
        }
    };
    let timed_out = tokio::time::timeout(deadline, collect).await.is_err();
    if timed_out {
        let _ = crate::launch::remove(docker, id, 0).await;
        let finished = Finished {
            code: EXIT_STOPPED,
            timed_out,
            duration: deadline,
        };
        return Ok((finished, tail));
    }
    // The output ended: the process has exited (or is about to).
    let code = tokio::time::timeout(
        Duration::from_secs(10),
        crate::launch::exit_code(docker, id),
    )
    .await
    .unwrap_or(-1);
    let finished = Finished {
        code,
        timed_out,
        duration: Duration::ZERO,
    };
    Ok((finished, tail))
}

/// Appends `more` to `buf`, keeping at most the last `limit` bytes.
pub fn keep_tail(buf: &mut Vec<u8>, more: &[u8], limit: usize) {
    if more.len() >= limit {
        buf.clear();
        buf.extend_from_slice(&more[more.len() - limit..]);
        return;
    }
    let over = (buf.len() + more.len()).saturating_sub(limit);
    buf.drain(..over);
    buf.extend_from_slice(more);
}

/// Adds a run to its log file, keeping the file's last [`LOG_BYTES`].
fn append_log(log: &Path, header: &str, output: &[u8]) {
    let mut text = read_capped(log, LOG_BYTES);
    text.extend_from_slice(header.as_bytes());
    text.extend_from_slice(output);
    if !output.is_empty() && !output.ends_with(b"\n") {
        text.push(b'\n');
    }
    let mut kept = Vec::new();
    keep_tail(&mut kept, &text, LOG_BYTES);
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::store::write_atomic(log, &kept, 0o600) {
        tracing::warn!(log = %log.display(), "cannot write a one-off's log: {e}");
    }
}

/// The last `limit` bytes of a file the daemon wrote itself.
pub fn read_capped(path: &Path, limit: usize) -> Vec<u8> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    keep_tail(&mut kept, &bytes, limit);
    kept
}

#[cfg(test)]
mod tests {
    use super::keep_tail;

    #[test]
    fn the_tail_keeps_the_newest_bytes() {
        let mut buf = Vec::new();
        keep_tail(&mut buf, b"abcdef", 4);
        assert_eq!(buf, b"cdef");
        keep_tail(&mut buf, b"gh", 4);
        assert_eq!(buf, b"efgh");
        keep_tail(&mut buf, b"i", 4);
        assert_eq!(buf, b"fghi");
        keep_tail(&mut buf, b"", 4);
        assert_eq!(buf, b"fghi");
    }
}
