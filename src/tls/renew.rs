//! Renewal: a loop beside the reconciler that issues a certificate for
//! every ACME app whose certificate expires within [`RENEW_BEFORE`], is
//! missing, or does not cover a domain routed to the app; with
//! `tls.auto: true` every routed app takes part. Failures back off per app
//! ([`backoff`]) and each one is written to the app's `events`.
//!
//! Touches only what [`super::issue`] touches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Mode, now_unix, state};
use crate::daemon::Daemon;

/// Renew this long before the certificate's not-after.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often the certificates are looked at.
const EVERY: Duration = Duration::from_secs(20);

/// Wait after the `n`th failure in a row: 1 min doubling, at most 12 h.
pub fn backoff(n: u32) -> Duration {
    let minutes = 1u64 << n.saturating_sub(1).min(10);
    Duration::from_secs((minutes * 60).min(12 * 3600))
}

/// Why `app` needs a new certificate now, if it does.
pub fn due(d: &Daemon, app: &str, auto: bool, now: i64) -> Option<&'static str> {
    let s = match state(d, app) {
        Ok(Some(s)) => s,
        Ok(None) if auto => return Some("tls.auto is on"),
        Ok(None) => return None,
        Err(e) => {
            warn!(app, "{e}");
            return None;
        }
    };
    match s.mode {
        Mode::Custom => return None,
        Mode::Acme => {}
    }
    if s.retry_at.is_some_and(|t| t > now) {
        return None;
    }
    match &s.current {
        None => Some("no certificate yet"),
        Some(c) if c.info.not_after_unix - now <= RENEW_BEFORE.as_secs() as i64 => {
            Some("the certificate expires within 30 days")
        }
        Some(_) if !super::uncovered(d, app, &s).is_empty() => {
            Some("a routed domain is not covered")
        }
        Some(_) => None,
    }
}

/// One pass over the apps.
pub async fn tick(d: &Daemon) {
    let auto = super::settings(d).map(|c| c.auto).unwrap_or(false);
    let now = now_unix();
    for app in d.store.apps().unwrap_or_default() {
        if d.router.routed_domains(&app).is_empty() {
            continue;
        }
        let Some(why) = due(d, &app, auto, now) else {
            continue;
        };
        if auto && matches!(state(d, &app), Ok(None)) && super::enable(d, &app).is_err() {
            continue;
        }
        info!(app, "issuing a certificate: {why}");
        match super::issue(d, &app).await {
            Ok(c) => {
                d.store.audit_system(
                    &app,
                    "certs:renew",
                    &format!("issued for {} until {}", c.domains.join(" "), c.not_after),
                );
            }
            Err(e) => {
                warn!(app, "certificate: {e}");
                d.store
                    .audit_system(&app, "certs:renew", &format!("failed: {e}"));
            }
        }
    }
}

/// The renewal loop; ends when `shutdown` changes.
pub async fn run(d: Arc<Daemon>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {},
            _ = shutdown.changed() => return,
        }
        tick(&d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_twelve_hours() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(5), Duration::from_secs(960));
        assert_eq!(backoff(30), Duration::from_secs(12 * 3600));
    }
}
