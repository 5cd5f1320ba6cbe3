//! The provider contract: what Quarry asks ([`AddRequest`]), what it is
//! answered ([`Size`], [`Machine`]), the [`Provider`] trait, the [`Static`]
//! provider (adds nothing) and [`AnyProvider`], the configured one.
//! May touch: nothing itself ([`Exec`] runs the configured program).

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::ProviderError;
use super::exec::Exec;
use crate::fleet;
use crate::grid::Labels;

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

/// The machine a provider added: how to reach it (its Docker engine, or
/// its sshd as with `servers:add --ssh`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The provider's id for it (given back to `remove`).
    pub id: String,
    /// `unix:///path.sock` or `tcp://host:port`; or give `ssh`.
    #[serde(default)]
    pub docker: Option<String>,
    /// `user@host[:port]` of its sshd, which holds the HQ's key; or give `docker`.
    #[serde(default)]
    pub ssh: Option<String>,
    /// The sshd's host key (`ssh-ed25519 AAAA…`); pinned on first contact
    /// when absent.
    #[serde(default)]
    pub host_key: Option<String>,
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
    fn ping(&self) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// The instance types it offers.
    fn sizes(&self) -> impl Future<Output = Result<Vec<Size>, ProviderError>> + Send;
    /// Start a machine of `request.size` with a Docker engine.
    fn add(
        &self,
        request: &AddRequest,
    ) -> impl Future<Output = Result<Machine, ProviderError>> + Send;
    /// Take machine `id` back.
    fn remove(
        &self,
        id: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// Servers are added by hand (`servers:add`); nothing is added or removed.
pub struct Static;

impl Provider for Static {
    fn kind(&self) -> &'static str {
        "static"
    }
    async fn ping(&self) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn sizes(&self) -> Result<Vec<Size>, ProviderError> {
        Ok(Vec::new())
    }
    async fn add(&self, _: &AddRequest) -> Result<Machine, ProviderError> {
        Err(ProviderError::StaticAdds)
    }
    async fn remove(&self, _: &str, name: &str) -> Result<(), ProviderError> {
        Err(ProviderError::StaticRemoves {
            name: name.to_string(),
        })
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
    async fn ping(&self) -> Result<(), ProviderError> {
        match self {
            AnyProvider::Static(p) => p.ping().await,
            AnyProvider::Exec(p) => p.ping().await,
        }
    }
    async fn sizes(&self) -> Result<Vec<Size>, ProviderError> {
        match self {
            AnyProvider::Static(p) => p.sizes().await,
            AnyProvider::Exec(p) => p.sizes().await,
        }
    }
    async fn add(&self, request: &AddRequest) -> Result<Machine, ProviderError> {
        match self {
            AnyProvider::Static(p) => p.add(request).await,
            AnyProvider::Exec(p) => p.add(request).await,
        }
    }
    async fn remove(&self, id: &str, name: &str) -> Result<(), ProviderError> {
        match self {
            AnyProvider::Static(p) => p.remove(id, name).await,
            AnyProvider::Exec(p) => p.remove(id, name).await,
        }
    }
}
