//! Reloading Quarry's nginx: a new generation number written, SIGHUP to
//! the master, then waiting until the workers answer with that generation
//! and the old workers stopped accepting, so a caller may retire old
//! containers right after. Touches `<data>/nginx/generation.conf` and
//! signals only the master this router started or adopted.

use std::fs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::adopt::{self, Nginx, accepting_workers};
use super::{RouteError, Router, render_generation};
use crate::store::write_atomic;

impl Router {
    /// Graceful reload, confirmed by the generation the workers answer with.
    pub(super) async fn reload(&self) -> Result<(), RouteError> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let file = self.dir.join("generation.conf");
        write_atomic(&file, render_generation(generation).as_bytes(), 0o644)
            .map_err(RouteError::Store)?;
        let pid = {
            let child = self.child.lock().await;
            child.as_ref().and_then(Nginx::pid)
        };
        let Some(pid) = pid else {
            return Err(RouteError::NotRunning);
        };
        let old_workers = accepting_workers(pid);
        // Only to the nginx master we started or adopted.
        adopt::signal(pid, rustix::process::Signal::HUP).map_err(RouteError::Signal)?;
        self.wait_generation(generation, Duration::from_secs(15))
            .await?;
        // New workers answer; old ones may still accept for a moment. They
        // close their listeners as they retitle themselves "shutting down":
        // wait for that, so no request after this returns sees the old config.
        let limit = Duration::from_secs(15);
        let deadline = Instant::now() + limit;
        loop {
            let still = accepting_workers(pid);
            if !old_workers.iter().any(|w| still.contains(w)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RouteError::OldWorkers(limit));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(super) async fn wait_generation(
        &self,
        want: u64,
        limit: Duration,
    ) -> Result<(), RouteError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(got) = self.served_generation().await
                && got >= want
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or("").to_string();
                return Err(RouteError::NotTaken { limit, last });
            }
            {
                let mut child = self.child.lock().await;
                if let Some(c) = child.as_mut()
                    && let Some(status) = c.exited(&self.dir)
                {
                    let mut err = String::new();
                    if let Nginx::Child(c) = c
                        && let Some(mut s) = c.stderr.take()
                    {
                        use tokio::io::AsyncReadExt;
                        let _ = s.read_to_string(&mut err).await;
                    }
                    *child = None;
                    return Err(RouteError::Exited {
                        status,
                        stderr: err.trim().to_string(),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The generation nginx's workers answer with (a short, capped answer);
    /// `None` while nothing on the listener answers with one.
    pub(super) async fn served_generation(&self) -> Option<u64> {
        let limit = Duration::from_secs(2);
        let stream = tokio::time::timeout(limit, tokio::net::TcpStream::connect(self.listen))
            .await
            .ok()?
            .ok()?;
        let answer = crate::probe::Probe::get("/.quarry/generation", "quarry.invalid")
            .read_body(64)
            .send(stream, limit)
            .await
            .ok()?;
        answer.text().trim().parse().ok()
    }
}
