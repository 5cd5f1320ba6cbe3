//! Where the daemon's log goes: under systemd, journald's native protocol,
//! where every field of an event and of the spans around it becomes a
//! journal field (`app` → `APP`, `release` → `RELEASE`, `server` →
//! `SERVER`), so `journalctl -u quarry APP=shop RELEASE=3` finds one
//! deploy's lines; anywhere else, plain lines on stderr as before.
//!
//! Under systemd means: `QUARRY_LOG_TO=journald`, or (unset or `auto`)
//! `JOURNAL_STREAM` names the very stream stderr is (systemd sets it for
//! `StandardError=journal`; a child that inherited the variable but whose
//! stderr went elsewhere keeps its stderr). If journald's socket cannot be
//! reached the lines go to stderr, with one warning saying why.
//! May touch: stderr, `/run/systemd/journal/socket` (the library's fixed path).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The variable that forces a sink: `journald`, `stderr` or `auto`.
pub const LOG_TO: &str = "QUARRY_LOG_TO";

/// The filter when `QUARRY_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,russh=warn,bollard=warn";

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    Journald,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("{LOG_TO}={0:?}: expected journald, stderr or auto")]
    BadSink(String),
}

/// The sink for `QUARRY_LOG_TO` (`log_to`), `JOURNAL_STREAM`
/// (`journal_stream`, systemd's `<device>:<inode>`) and the device and inode
/// of stderr as it is now.
pub fn choose(
    log_to: Option<&str>,
    journal_stream: Option<&str>,
    stderr: Option<(u64, u64)>,
) -> Result<Sink, LogError> {
    match log_to.map(str::trim) {
        Some("journald") => return Ok(Sink::Journald),
        Some("stderr") => return Ok(Sink::Stderr),
        None | Some("") | Some("auto") => {}
        Some(other) => return Err(LogError::BadSink(other.to_string())),
    }
    let named = journal_stream.and_then(|s| {
        let (dev, ino) = s.trim().split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    });
    Ok(match (named, stderr) {
        (Some(named), Some(now)) if named == now => Sink::Journald,
        _ => Sink::Stderr,
    })
}

/// Device and inode of stderr.
fn stderr_id() -> Option<(u64, u64)> {
    let st = rustix::fs::fstat(std::io::stderr()).ok()?;
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Install the daemon's subscriber (`QUARRY_LOG` filters, as before) and
/// say which sink it writes to.
pub fn init() -> Result<Sink, LogError> {
    let sink = choose(
        std::env::var(LOG_TO).ok().as_deref(),
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_id(),
    )?;
    let filter = || EnvFilter::try_from_env("QUARRY_LOG").unwrap_or_else(|_| DEFAULT_FILTER.into());
    let fallback = match sink {
        Sink::Journald => match tracing_journald::layer() {
            Ok(layer) => {
                // No `F_` prefix: the fields are named as in the code.
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("quarry".into());
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .init();
                return Ok(Sink::Journald);
            }
            Err(e) => Some(e),
        },
        Sink::Stderr => None,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .init();
    if let Some(e) = fallback {
        tracing::warn!("journald is not reachable ({e}): logging to stderr");
    }
    Ok(Sink::Stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_be_stderr_itself() {
        let id = Some((64769, 1234));
        assert_eq!(choose(None, Some("64769:1234"), id), Ok(Sink::Journald));
        // Inherited by a child whose stderr went to a file.
        assert_eq!(choose(None, Some("64769:999"), id), Ok(Sink::Stderr));
        assert_eq!(choose(None, Some("junk"), id), Ok(Sink::Stderr));
        assert_eq!(choose(None, None, id), Ok(Sink::Stderr));
        assert_eq!(
            choose(Some("auto"), Some("64769:1234"), None),
            Ok(Sink::Stderr)
        );
    }

    #[test]
    fn quarry_log_to_forces_a_sink() {
        assert_eq!(choose(Some("journald"), None, None), Ok(Sink::Journald));
        assert_eq!(
            choose(Some("stderr"), Some("1:2"), Some((1, 2))),
            Ok(Sink::Stderr)
        );
        assert_eq!(
            choose(Some("syslog"), None, None).unwrap_err().to_string(),
            "QUARRY_LOG_TO=\"syslog\": expected journald, stderr or auto"
        );
    }
}
