//! The cloud layer: answers the grid's `create` and `destroy` events by
//! asking a provider for a server, or to take one back.
//!
//! A [`Provider`] knows its instance types ([`Size`]: CPUs, RAM, price), adds
//! a machine of a size and removes one by its id. Two implementations:
//! [`Static`] (servers are added by hand with `servers:add`; it adds and
//! removes nothing) and [`Exec`] (runs a configured executable with one JSON
//! request on stdin and reads one JSON answer from stdout: the way to plug in
//! any cloud's CLI; the contract is in docs/providers.md).
//!
//! The fleet's bounds and the provider come from `<data>/config.yml`, read
//! on each use so an edit applies without a restart:
//!
//! ```yaml
//! grid:
//!   autosize: true     # ask the provider for servers (default false)
//!   min: 1             # never remove a server when this many or fewer remain
//!   max: 5             # never add one when the fleet holds this many
//!   idle: 60           # seconds a provider's server stays empty before removal
//! provider:
//!   kind: exec         # or static (the default)
//!   command: /usr/local/bin/quarry-provider
//!   args: [--region, eu]
//!   timeout: 300       # seconds per request
//! ```
//!
//! Only servers a provider made (their settings name it) are ever removed by
//! it; `local` and servers added by hand never are.
//! May touch: the provider's executable, the fleet (through `fleet`).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

pub use crate::config::{Config, GridConfig, ProviderConfig};

use crate::config::one_line;
use crate::fleet;
use crate::grid::Labels;

impl Config {
    /// The configured provider.
    pub fn provider(&self) -> AnyProvider {
        match &self.provider {
            ProviderConfig::Static => AnyProvider::Static(Static),
            ProviderConfig::Exec {
                command,
                args,
                timeout,
            } => AnyProvider::Exec(Exec {
                command: command.clone(),
                args: args.clone(),
                timeout: Duration::from_secs(timeout.unwrap_or(300).max(1)),
            }),
        }
    }
}

// ----- the provider trait ----------------------------------------------------

/// An instance type a provider offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Size {
    pub name: String,
    #[serde(default)]
    pub cpus: u32,
    /// RAM in MiB.
    pub memory: u64,
    /// Price per hour, in the provider's currency (used to break ties).
    #[serde(default)]
    pub price: f64,
}

/// What Quarry asks a provider to add.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddRequest {
    /// The server name Quarry will give it (`auto-N`).
    pub name: String,
    pub size: String,
    /// The RAM the grid needs (MiB); the size has at least this much.
    pub memory: u64,
    /// Labels the new server must carry.
    pub labels: Labels,
}

/// The machine a provider added: how to reach its Docker engine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The provider's id for it (given back to `remove`).
    pub id: String,
    /// `unix:///path.sock` or `tcp://host:port`.
    pub docker: String,
    /// The address its containers publish their ports on.
    pub address: String,
    /// RAM for the grid (MiB); the size's when absent.
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub labels: Labels,
    /// Client certificate files for a `tcp://` engine with TLS.
    #[serde(default)]
    pub tls: Option<fleet::TlsFiles>,
    /// A `tcp://` engine without TLS, on a network the provider vouches
    /// for; without it such an answer is refused (and the machine given back).
    #[serde(default)]
    pub insecure: bool,
}

/// A source of servers. Errors are one line, the provider's own words.
pub trait Provider {
    /// `static`, `exec`.
    fn kind(&self) -> &'static str;
    /// Whether the provider answers at all.
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// The instance types it offers.
    fn sizes(&self) -> impl Future<Output = Result<Vec<Size>, String>> + Send;
    /// Start a machine of `request.size` with a Docker engine.
    fn add(&self, request: &AddRequest) -> impl Future<Output = Result<Machine, String>> + Send;
    /// Take machine `id` back.
    fn remove(&self, id: &str, name: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Servers are added by hand (`servers:add`); nothing is added or removed.
pub struct Static;

impl Provider for Static {
    fn kind(&self) -> &'static str {
        "static"
    }
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
    async fn sizes(&self) -> Result<Vec<Size>, String> {
        Ok(Vec::new())
    }
    async fn add(&self, _: &AddRequest) -> Result<Machine, String> {
        Err("the static provider adds no servers: add one with servers:add, or configure an exec provider in config.yml".into())
    }
    async fn remove(&self, _: &str, name: &str) -> Result<(), String> {
        Err(format!(
            "the static provider removes no servers: remove {name} with servers:remove"
        ))
    }
}

/// Runs `command args…` once per request: the request as one JSON object on
/// stdin, the answer as one JSON object on stdout. Exit 0 with the answer,
/// or non-zero with `{"error": "…"}` on stdout or a reason on stderr.
pub struct Exec {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

impl Exec {
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: serde_json::Value,
    ) -> Result<T, String> {
        let action = request["action"].as_str().unwrap_or("?").to_string();
        let fail = |why: String| format!("provider exec ({action}): {why}");
        let mut child = tokio::process::Command::new(&self.command)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.command.display())))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut body = serde_json::to_vec(&request).expect("serializable");
        body.push(b'\n');
        // A provider that does not read its input still gets to answer.
        let _ = stdin.write_all(&body).await;
        drop(stdin);
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                fail(format!(
                    "no answer within {:.1}s",
                    self.timeout.as_secs_f64()
                ))
            })?
            .map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answer: Option<serde_json::Value> = serde_json::from_str(stdout.trim()).ok();
        if let Some(error) = answer
            .as_ref()
            .and_then(|a| a.get("error"))
            .and_then(|e| e.as_str())
        {
            return Err(fail(one_line(error)));
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(one_line)
                .unwrap_or_else(|| format!("exited with {}", out.status));
            return Err(fail(reason));
        }
        let answer = answer.ok_or_else(|| {
            fail(format!(
                "answered no JSON object on stdout: {:?}",
                stdout.chars().take(200).collect::<String>()
            ))
        })?;
        serde_json::from_value(answer).map_err(|e| fail(format!("unexpected answer: {e}")))
    }
}

#[derive(Deserialize)]
struct SizesAnswer {
    sizes: Vec<Size>,
}

impl Provider for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }
    async fn ping(&self) -> Result<(), String> {
        self.call::<serde_json::Value>(serde_json::json!({"action": "ping"}))
            .await
            .map(|_| ())
    }
    async fn sizes(&self) -> Result<Vec<Size>, String> {
        self.call::<SizesAnswer>(serde_json::json!({"action": "sizes"}))
            .await
            .map(|a| a.sizes)
    }
    async fn add(&self, request: &AddRequest) -> Result<Machine, String> {
        let mut body = serde_json::to_value(request).expect("serializable");
        body["action"] = "add".into();
        self.call::<Machine>(body).await
    }
    async fn remove(&self, id: &str, name: &str) -> Result<(), String> {
        self.call::<serde_json::Value>(
            serde_json::json!({"action": "remove", "id": id, "name": name}),
        )
        .await
        .map(|_| ())
    }
}

/// The configured provider, whichever it is.
pub enum AnyProvider {
    Static(Static),
    Exec(Exec),
}

impl Provider for AnyProvider {
    fn kind(&self) -> &'static str {
        match self {
            AnyProvider::Static(p) => p.kind(),
            AnyProvider::Exec(p) => p.kind(),
        }
    }
    async fn ping(&self) -> Result<(), String> {
        match self {
            AnyProvider::Static(p) => p.ping().await,
            AnyProvider::Exec(p) => p.ping().await,
        }
    }
    async fn sizes(&self) -> Result<Vec<Size>, String> {
        match self {
            AnyProvider::Static(p) => p.sizes().await,
            AnyProvider::Exec(p) => p.sizes().await,
        }
    }
    async fn add(&self, request: &AddRequest) -> Result<Machine, String> {
        match self {
            AnyProvider::Static(p) => p.add(request).await,
            AnyProvider::Exec(p) => p.add(request).await,
        }
    }
    async fn remove(&self, id: &str, name: &str) -> Result<(), String> {
        match self {
            AnyProvider::Static(p) => p.remove(id, name).await,
            AnyProvider::Exec(p) => p.remove(id, name).await,
        }
    }
}

// ----- decisions (pure) -------------------------------------------------------

/// The cheapest fitting instance type: the smallest RAM that holds `need`
/// MiB, then the lower price, then the name.
pub fn choose_size(sizes: &[Size], need: u64) -> Result<&Size, String> {
    sizes
        .iter()
        .filter(|s| s.memory >= need)
        .min_by(|a, b| {
            a.memory
                .cmp(&b.memory)
                .then(a.price.total_cmp(&b.price))
                .then(a.name.cmp(&b.name))
        })
        .ok_or_else(|| match sizes.iter().max_by_key(|s| s.memory) {
            Some(big) => format!(
                "no instance type has {need} MiB (the largest, {}, has {} MiB)",
                big.name, big.memory
            ),
            None => "the provider offers no instance types".to_string(),
        })
}

/// The first free `auto-N` server name.
pub fn next_name(taken: &[String]) -> String {
    (1..)
        .map(|n| format!("auto-{n}"))
        .find(|name| !taken.contains(name))
        .expect("a free name")
}

// ----- answering the grid's events -------------------------------------------

/// Serialises the cloud layer's work and remembers since when each of a
/// provider's servers has been empty.
#[derive(Default)]
pub struct Cloud {
    pub(crate) busy: tokio::sync::Mutex<()>,
    pub(crate) empty_since: std::sync::Mutex<HashMap<String, Instant>>,
    /// Rollouts under way: while any runs, no server counts as empty (a
    /// server just added for one is about to be used).
    pub(crate) rollouts: AtomicUsize,
}

impl Cloud {
    /// Mark a rollout as under way until the guard drops.
    pub fn rollout(&self) -> Rollout<'_> {
        self.rollouts.fetch_add(1, Ordering::SeqCst);
        Rollout(self)
    }
}

/// See [`Cloud::rollout`].
pub struct Rollout<'a>(&'a Cloud);

impl Drop for Rollout<'_> {
    fn drop(&mut self) {
        self.0.rollouts.fetch_sub(1, Ordering::SeqCst);
        // Idle time counts from the end of the last rollout.
        self.0.empty_since.lock().expect("cloud").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Options;

    fn size(name: &str, memory: u64, price: f64) -> Size {
        Size {
            name: name.into(),
            cpus: 1,
            memory,
            price,
        }
    }

    #[test]
    fn the_smallest_fitting_then_cheapest_size_is_chosen() {
        let sizes = vec![
            size("large", 4096, 0.04),
            size("small", 1024, 0.01),
            size("small-b", 1024, 0.008),
            size("medium", 2048, 0.02),
        ];
        assert_eq!(choose_size(&sizes, 512).unwrap().name, "small-b");
        assert_eq!(choose_size(&sizes, 1025).unwrap().name, "medium");
        assert_eq!(
            choose_size(&sizes, 8192).unwrap_err(),
            "no instance type has 8192 MiB (the largest, large, has 4096 MiB)"
        );
        assert_eq!(
            choose_size(&[], 1).unwrap_err(),
            "the provider offers no instance types"
        );
    }

    #[test]
    fn auto_names_skip_taken_ones() {
        assert_eq!(next_name(&[]), "auto-1");
        assert_eq!(
            next_name(&["auto-1".into(), "local".into(), "auto-3".into()]),
            "auto-2"
        );
    }

    #[test]
    fn config_yml_is_read_and_checked() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse(
            "grid:\n  autosize: true\n  min: 1\n  max: 3\n  idle: 5\nprovider:\n  kind: exec\n  command: /opt/p\n  args: [a, b]\n",
        )
        .unwrap();
        assert_eq!(
            c.grid.options(),
            Options {
                min: 1,
                max: 3,
                autosize: true
            }
        );
        assert_eq!(
            c.provider,
            ProviderConfig::Exec {
                command: "/opt/p".into(),
                args: vec!["a".into(), "b".into()],
                timeout: None
            }
        );
        assert!(
            Config::parse("provider:\n  kind: exec\n  command: p\n")
                .unwrap_err()
                .to_string()
                .contains("provider.command: use an absolute path")
        );
        assert!(
            Config::parse("grid:\n  max: 1\n  min: 2\n")
                .unwrap_err()
                .to_string()
                .contains("grid.max (1) is below grid.min (2)")
        );
        assert_eq!(
            Config::parse("grid:\n  autosise: true\n")
                .unwrap_err()
                .to_string(),
            "config.yml:2: grid.autosise: unknown field, expected one of autosize, min, max, idle"
        );
        assert_eq!(
            Config::parse("provider:\n  kind: aws\n")
                .unwrap_err()
                .to_string(),
            "config.yml:2: provider.kind: expected static or exec, found \"aws\""
        );
        assert_eq!(
            Config::parse("grid:\n  min: many\n")
                .unwrap_err()
                .to_string(),
            "config.yml:2: grid.min: expected an integer, found \"many\""
        );
    }

    fn exec(script: &str) -> (tempfile::TempDir, Exec) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exec = Exec {
            command: path,
            args: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        (dir, exec)
    }

    #[tokio::test]
    async fn exec_speaks_json_and_reports_failures_in_the_providers_words() {
        let (_d, p) = exec(
            r#"read req
case "$req" in
  *'"sizes"'*) echo '{"sizes":[{"name":"s1","cpus":2,"memory":1024,"price":0.01}]}' ;;
  *'"add"'*) case "$req" in *'"name":"auto-1"'*) echo '{"id":"m-1","docker":"tcp://10.0.0.9:2375","address":"10.0.0.9"}' ;; *) echo "bad request: $req" >&2; exit 3 ;; esac ;;
  *'"remove"'*) echo '{"error":"machine m-9 is not mine"}'; exit 1 ;;
  *) echo '{}' ;;
esac"#,
        );
        p.ping().await.unwrap();
        assert_eq!(
            p.sizes().await.unwrap(),
            vec![Size {
                cpus: 2,
                ..size("s1", 1024, 0.01)
            }]
        );
        let m = p
            .add(&AddRequest {
                name: "auto-1".into(),
                size: "s1".into(),
                memory: 512,
                labels: Labels::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            (
                m.id.as_str(),
                m.docker.as_str(),
                m.address.as_str(),
                m.memory
            ),
            ("m-1", "tcp://10.0.0.9:2375", "10.0.0.9", None)
        );
        let e = p
            .add(&AddRequest {
                name: "auto-2".into(),
                size: "s1".into(),
                memory: 512,
                labels: Labels::new(),
            })
            .await
            .unwrap_err();
        assert!(e.starts_with("provider exec (add): bad request: {"), "{e}");
        assert_eq!(
            p.remove("m-9", "auto-1").await.unwrap_err(),
            "provider exec (remove): machine m-9 is not mine"
        );
    }

    #[tokio::test]
    async fn exec_failures_without_words_are_still_explained() {
        let (_d, p) = exec("echo not json");
        assert!(
            p.ping()
                .await
                .unwrap_err()
                .starts_with("provider exec (ping): answered no JSON object on stdout")
        );
        let (_d, p) = exec("exit 7");
        assert!(
            p.ping()
                .await
                .unwrap_err()
                .contains("exited with exit status: 7")
        );
        let (_d, mut p) = exec("sleep 5");
        p.timeout = Duration::from_millis(200);
        assert_eq!(
            p.sizes().await.unwrap_err(),
            "provider exec (sizes): no answer within 0.2s"
        );
        let p = Exec {
            command: "/nonexistent/provider".into(),
            args: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        assert!(
            p.ping()
                .await
                .unwrap_err()
                .starts_with("provider exec (ping): cannot run /nonexistent/provider:")
        );
    }
}
