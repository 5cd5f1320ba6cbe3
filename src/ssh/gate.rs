//! Who may hold the SSH port before authenticating, and for how long.
//!
//! Anyone on the internet reaches the port, so nothing unauthenticated may
//! hold resources for long: every accepted connection needs a [`Ticket`]
//! (a slot under a global cap and a per-address cap) until it authenticates,
//! and its stream is wrapped in a [`Guarded`] whose [`Switch`] fails every
//! read and write once thrown. The switch is thrown at the auth deadline for
//! a connection that has not authenticated (one that never sends a version
//! line included), and by the session registry when a key is removed. Failing
//! the stream ends russh's session task wherever it waits, even on a peer that
//! reads nothing, which a polite disconnect message could not.
//!
//! It touches only memory and the stream it wraps.

pub use crate::sessions::Switch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The endpoint's limits, from the environment of `quarry serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Handshake plus authentication must be done within this.
    pub auth_timeout: Duration,
    /// Connections not yet authenticated, from all addresses together.
    pub max_unauthenticated: usize,
    /// Connections not yet authenticated from one source address.
    pub max_unauthenticated_per_address: usize,
    /// Logged-in connections of one deployer key (admins are not capped).
    pub max_sessions_per_key: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            auth_timeout: Duration::from_secs(30),
            max_unauthenticated: 64,
            max_unauthenticated_per_address: 10,
            max_sessions_per_key: 32,
        }
    }
}

/// A limit variable that does not hold a positive whole number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("environment variable {var}={value:?}: expected a whole number from 1 to {max}")]
pub struct LimitError {
    pub var: &'static str,
    pub value: String,
    pub max: u64,
}

impl Limits {
    /// `QUARRY_AUTH_TIMEOUT` (seconds), `QUARRY_MAX_UNAUTHENTICATED`,
    /// `QUARRY_MAX_UNAUTHENTICATED_PER_ADDRESS`, `QUARRY_MAX_SESSIONS_PER_KEY`;
    /// unset ones keep the defaults.
    pub fn from_env() -> Result<Limits, LimitError> {
        Limits::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitError> {
        let number = |var: &'static str, default: u64, max: u64| -> Result<u64, LimitError> {
            match lookup(var) {
                None => Ok(default),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(LimitError { var, value, max }),
                },
            }
        };
        let d = Limits::default();
        Ok(Limits {
            auth_timeout: Duration::from_secs(number(
                "QUARRY_AUTH_TIMEOUT",
                d.auth_timeout.as_secs(),
                3600,
            )?),
            max_unauthenticated: number(
                "QUARRY_MAX_UNAUTHENTICATED",
                d.max_unauthenticated as u64,
                1_000_000,
            )? as usize,
            max_unauthenticated_per_address: number(
                "QUARRY_MAX_UNAUTHENTICATED_PER_ADDRESS",
                d.max_unauthenticated_per_address as u64,
                1_000_000,
            )? as usize,
            max_sessions_per_key: number(
                "QUARRY_MAX_SESSIONS_PER_KEY",
                d.max_sessions_per_key as u64,
                1_000_000,
            )? as usize,
        })
    }
}

/// Why a connection was closed right after accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many unauthenticated connections in all.
    Global,
    /// Too many unauthenticated connections from this address.
    PerAddress,
}

/// Counts the unauthenticated connections.
pub struct Gate {
    limits: Limits,
    counts: Mutex<Counts>,
    refusals: Mutex<Throttle>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            counts: Mutex::default(),
            refusals: Mutex::new(Throttle::new(Duration::from_secs(1))),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A slot for a new connection from `address`, or why there is none.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refusal> {
        let mut counts = self.counts.lock().expect("gate");
        if counts.total >= self.limits.max_unauthenticated {
            return Err(Refusal::Global);
        }
        let mine = counts.by_address.entry(address).or_default();
        if *mine >= self.limits.max_unauthenticated_per_address {
            return Err(Refusal::PerAddress);
        }
        *mine += 1;
        counts.total += 1;
        Ok(Ticket {
            gate: self.clone(),
            address,
        })
    }

    /// Whether a refusal should be logged now; `Some(n)` carries how many
    /// were refused since the last logged one. A flood logs once a second.
    pub fn log_refusal(&self) -> Option<u64> {
        self.refusals.lock().expect("gate").hit(Instant::now())
    }

    /// Unauthenticated connections now: in all, and from `address`.
    pub fn count(&self, address: IpAddr) -> (usize, usize) {
        let counts = self.counts.lock().expect("gate");
        (
            counts.total,
            counts.by_address.get(&address).copied().unwrap_or(0),
        )
    }
}

/// A connection's place under the caps; freed when dropped (at
/// authentication, or when the connection ends).
pub struct Ticket {
    gate: Arc<Gate>,
    address: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock().expect("gate");
        counts.total -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

/// At most one event per `every`; counts the ones in between.
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(events since the last reported one, this one included)` when
    /// this event may be reported.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.held += 1;
        match self.last {
            Some(t) if now.duration_since(t) < self.every => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// A stream that fails once its switch is thrown.
pub struct Guarded<S> {
    inner: S,
    switch: Arc<Switch>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, switch: Arc<Switch>) -> Guarded<S> {
        Guarded { inner, switch }
    }
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        self.switch.ended.send_replace(true);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.switch.check(&this.switch.read, cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.switch.check(&this.switch.write, cx)?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.switch.check(&this.switch.write, cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raise the soft descriptor limit to the hard one: each connection, git
/// child and engine connection holds descriptors, and the usual soft limit
/// (1024) is what a flood exhausts first. Returns (before, after).
pub fn raise_nofile_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit is not a valid soft one for descriptors: the
    // kernel caps it at fs.nr_open.
    let target = limit.maximum.unwrap_or(1 << 20);
    if limit.current.is_some_and(|c| c >= target) {
        return Ok((limit.current, limit.current));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    )?;
    Ok((limit.current, Some(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_environment_and_bad_values_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Limits::from_lookup(env(&[])).unwrap(), Limits::default());
        let l = Limits::from_lookup(env(&[
            ("QUARRY_AUTH_TIMEOUT", "2"),
            ("QUARRY_MAX_UNAUTHENTICATED_PER_ADDRESS", "3"),
        ]))
        .unwrap();
        assert_eq!(l.auth_timeout, Duration::from_secs(2));
        assert_eq!(l.max_unauthenticated, 64);
        assert_eq!(l.max_unauthenticated_per_address, 3);
        assert_eq!(
            Limits::from_lookup(env(&[("QUARRY_AUTH_TIMEOUT", "0")]))
                .unwrap_err()
                .to_string(),
            "environment variable QUARRY_AUTH_TIMEOUT=\"0\": expected a whole number from 1 to 3600"
        );
        assert!(Limits::from_lookup(env(&[("QUARRY_MAX_UNAUTHENTICATED", "lots")])).is_err());
    }

    #[test]
    fn caps_count_globally_and_per_address_and_free_on_drop() {
        let gate = Gate::new(Limits {
            auth_timeout: Duration::from_secs(1),
            max_unauthenticated: 3,
            max_unauthenticated_per_address: 2,
            max_sessions_per_key: 1,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t1 = gate.admit(a).unwrap();
        let _t2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refusal::PerAddress));
        let _t3 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refusal::Global));
        drop(t1);
        assert_eq!(gate.count(a), (2, 1));
        assert!(gate.admit(a).is_ok());
    }

    #[test]
    fn throttle_reports_once_per_period_with_the_count() {
        let mut t = Throttle::new(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(t.hit(now), Some(1));
        assert_eq!(t.hit(now + Duration::from_millis(10)), None);
        assert_eq!(t.hit(now + Duration::from_millis(20)), None);
        assert_eq!(t.hit(now + Duration::from_secs(2)), Some(3));
    }

    #[tokio::test]
    async fn a_thrown_switch_wakes_a_pending_read_with_an_error() {
        use tokio::io::AsyncReadExt;
        let (a, _b) = tokio::io::duplex(64);
        let switch = Arc::new(Switch::default());
        let mut guarded = Guarded::new(a, switch.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            guarded.read(&mut buf).await
        });
        assert!(switch.clone().deadline(Duration::from_millis(50)).await);
        let err = reader.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
        let authed = Arc::new(Switch::default());
        authed.set_authenticated();
        assert!(!authed.deadline(Duration::from_millis(1)).await);
    }
}
