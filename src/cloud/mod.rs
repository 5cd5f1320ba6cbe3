//! The cloud layer: answers the grid's `create` and `destroy` events by
//! asking a provider for a server, or to take one back.
//!
//! A [`Provider`] knows its instance types ([`Size`]: CPUs, RAM, price), adds
//! a machine of a size and removes one by its id. Two implementations:
//! [`Static`] (servers are added by hand with `servers:add`; it adds and
//! removes nothing) and [`Exec`] (runs a configured executable with one JSON
//! request on stdin and reads one JSON answer from stdout: the way to plug in
//! any cloud's CLI; the contract is in docs/providers.md). A machine is
//! reached through its Docker engine or, like `servers:add --ssh`, its sshd
//! ([`answer`]); over SSH the provisioners named in `provider.provision`
//! run before it takes containers.
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
//!   provision: [base]  # provisioners run on its servers reached over SSH
//! ```
//!
//! Only servers a provider made (their settings name it) are ever removed by
//! it; `local` and servers added by hand never are.
//! Layout: `provider` (the contract, static), `exec`, `answer` (an `add`
//! answer to a server), `error`; this file: the choices (pure) and the
//! serialising state. May touch: the provider's executable (in `exec`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crate::config::{Config, GridConfig, ProviderConfig};

pub mod answer;
mod error;
mod exec;
mod provider;

pub use error::ProviderError;
pub use exec::Exec;
pub use provider::{AddRequest, AnyProvider, Machine, Provider, Size, Static};

impl Config {
    /// The configured provider.
    pub fn provider(&self) -> AnyProvider {
        match &self.provider {
            ProviderConfig::Static => AnyProvider::Static(Static),
            ProviderConfig::Exec {
                command,
                args,
                timeout,
                provision: _,
            } => AnyProvider::Exec(Exec {
                command: command.clone(),
                args: args.clone(),
                timeout: Duration::from_secs(timeout.unwrap_or(300).max(1)),
            }),
        }
    }

    /// The provisioners a provider's new server runs (over SSH) before it
    /// takes containers, in order.
    pub fn provision(&self) -> &[String] {
        match &self.provider {
            ProviderConfig::Static => &[],
            ProviderConfig::Exec { provision, .. } => provision,
        }
    }
}

// ----- decisions (pure) -------------------------------------------------------

/// The cheapest fitting instance type: the smallest RAM that holds `need`
/// MiB, then the lower price, then the name.
pub fn choose_size(sizes: &[Size], need: u64) -> Result<&Size, ProviderError> {
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
            Some(big) => ProviderError::NoSizeFits {
                need,
                largest: big.name.clone(),
                memory: big.memory,
            },
            None => ProviderError::NoSizes,
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
            choose_size(&sizes, 8192).unwrap_err().to_string(),
            "no instance type has 8192 MiB (the largest, large, has 4096 MiB)"
        );
        assert_eq!(
            choose_size(&[], 1).unwrap_err().to_string(),
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
                timeout: None,
                provision: Vec::new()
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
}
