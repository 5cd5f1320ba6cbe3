//! Readiness: a web container answers its health check (HTTP, or TCP with
//! `tcp: true`), a worker stays up, a service accepts TCP; why one did not,
//! with its last log lines. May touch: the engine (inspect, logs), the
//! container's address.

use super::*;
use crate::probe::{Probe, ProbeError};

/// Why a container was not ready.
#[derive(Debug)]
pub struct NotReady {
    pub reason: String,
    /// The container's last log lines.
    pub logs: Vec<String>,
}

/// How a new web container proves it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCheck {
    /// `Some(path)`: GET it with the app's first domain as Host. `None`: TCP connect.
    pub path: Option<String>,
    /// A configured check wants 2xx/3xx; the default accepts any non-5xx.
    pub strict: bool,
    pub interval: Duration,
    /// Give up after this many failed probes (`None`: only the deadline counts).
    pub attempts: Option<u32>,
    pub deadline: Duration,
}

impl ReadyCheck {
    /// From quarry.yml's `healthcheck`; without one: GET / accepting any
    /// non-5xx within 60 s, probed often so a fast app is live fast.
    pub fn from_manifest(check: Option<&crate::manifest::HealthCheck>) -> ReadyCheck {
        match check {
            None => ReadyCheck {
                path: Some("/".into()),
                strict: false,
                interval: Duration::from_millis(200),
                attempts: None,
                deadline: Duration::from_secs(60),
            },
            Some(c) => ReadyCheck {
                path: if c.tcp {
                    None
                } else {
                    Some(c.path.clone().unwrap_or_else(|| "/".into()))
                },
                strict: true,
                interval: Duration::from_secs(c.interval.max(1).into()),
                attempts: c.attempts,
                deadline: Duration::from_secs(c.timeout.into()),
            },
        }
    }
}

/// Wait until the web container `id` passes `check` at its published
/// address, or fail when it exits, runs out of attempts or the deadline passes.
pub async fn wait_ready(
    docker: &Docker,
    id: &str,
    host_header: &str,
    check: &ReadyCheck,
) -> Result<SocketAddr, NotReady> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let mut attempts = 0u32;
    loop {
        if let Some(nr) = stopped(docker, id, " before it answered").await {
            return Err(nr);
        }
        if let Ok(Some(addr)) = address(docker, id).await {
            attempts += 1;
            let plural = if attempts == 1 { "attempt" } else { "attempts" };
            match &check.path {
                Some(path) => match probe_http(addr, host_header, path, Duration::from_secs(2))
                    .await
                {
                    Ok(code)
                        if (check.strict && (200..400).contains(&code))
                            || (!check.strict && code < 500) =>
                    {
                        return Ok(addr);
                    }
                    Ok(code) => {
                        last = format!("GET {path} on {addr} → {code} after {attempts} {plural}")
                    }
                    Err(e) => {
                        last = format!("GET {path} on {addr} → {e} after {attempts} {plural}")
                    }
                },
                None => {
                    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
                        .await
                    {
                        Ok(Ok(_)) => return Ok(addr),
                        Ok(Err(e)) => {
                            last = format!(
                                "TCP connect to {addr} → {} after {attempts} {plural}",
                                e.kind()
                            )
                        }
                        Err(_) => {
                            last = format!(
                                "TCP connect to {addr} → no answer after {attempts} {plural}"
                            )
                        }
                    }
                }
            }
            if check.attempts.is_some_and(|max| attempts >= max) {
                return Err(NotReady {
                    reason: format!("health check failed: {last}"),
                    logs: tail_logs(docker, id, 20).await,
                });
            }
        }
        if started.elapsed() >= check.deadline {
            return Err(NotReady {
                reason: format!(
                    "health check failed within {}s: {last}; does the app listen on $PORT?",
                    check.deadline.as_secs()
                ),
                logs: tail_logs(docker, id, 20).await,
            });
        }
        // A fast app is live fast: the first probes come quickly, then the
        // configured interval. Not when attempts are counted: each then
        // stands for one interval.
        let pause = match (check.attempts, attempts) {
            (None, 0..=4) => check.interval.min(Duration::from_millis(25)),
            (None, 5..=12) => check.interval.min(Duration::from_millis(100)),
            _ => check.interval,
        };
        tokio::time::sleep(pause).await;
    }
}

/// A worker has no port to probe: it is ready when it is still running after
/// `settle`, and not ready when it exits before.
pub async fn wait_stays_up(docker: &Docker, id: &str, settle: Duration) -> Result<(), NotReady> {
    let until = Instant::now() + settle;
    loop {
        if let Some(nr) = stopped(docker, id, "").await {
            return Err(nr);
        }
        if Instant::now() >= until {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Why `id` is not running (exited, or restarting after a crash), with its
/// last log lines; `None` while it runs.
pub(super) async fn stopped(docker: &Docker, id: &str, context: &str) -> Option<NotReady> {
    let state = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|i| i.state);
    let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
    let restarting = state.as_ref().and_then(|s| s.restarting).unwrap_or(false);
    if running && !restarting {
        return None;
    }
    let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
    Some(NotReady {
        reason: format!("the container exited with code {code}{context}"),
        logs: tail_logs(docker, id, 20).await,
    })
}

/// One HTTP/1.0 GET; returns the status code (the body is not read).
pub async fn probe_http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ProbeError::Connect(e.kind()))?;
        Probe::get(path, host)
            .user_agent("quarry-health")
            .send(stream, timeout)
            .await
    };
    let answer = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))??;
    Ok(answer.status)
}

/// The last `n` log lines of a container (stdout and stderr).
pub async fn tail_logs(docker: &Docker, id: &str, n: usize) -> Vec<String> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&n.to_string())
        .build();
    let mut stream = docker.logs(id, Some(options));
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        out.extend(text.lines().map(str::to_string));
    }
    let skip = out.len().saturating_sub(n);
    out.split_off(skip)
}

/// Wait until a service container accepts TCP connections on `port`, or
/// fail when it exits or `deadline` passes: on its address in `network` (the
/// app network's id; a container on this machine), or on `at` (its
/// published address on another server).
pub async fn wait_tcp_ready(
    docker: &Docker,
    id: &str,
    network: &str,
    port: u16,
    at: Option<SocketAddr>,
    deadline: Duration,
) -> Result<(), NotReady> {
    let started = Instant::now();
    loop {
        let info = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await;
        let info = info.ok();
        let state = info.as_ref().and_then(|i| i.state.clone());
        if !state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
            return Err(NotReady {
                reason: format!("the container exited with code {code}"),
                logs: tail_logs(docker, id, 20).await,
            });
        }
        let ip = info
            .and_then(|i| i.network_settings)
            .and_then(|n| n.networks)
            .and_then(|n| {
                n.into_values()
                    .find(|e| e.network_id.as_deref() == Some(network))
            })
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        let target = at.or_else(|| ip.and_then(|ip| format!("{ip}:{port}").parse().ok()));
        if let Some(addr) = target
            && tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
                .await
                .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        if started.elapsed() >= deadline {
            return Err(NotReady {
                reason: format!(
                    "it did not accept connections on port {port} within {}s",
                    deadline.as_secs()
                ),
                logs: tail_logs(docker, id, 20).await,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
