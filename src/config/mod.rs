//! `<data>/config.yml`: the instance's settings, read on each use so an
//! edit applies without a restart. Every key is optional (null is unset);
//! unknown keys, wrong types and bad values are refused with
//! `config.yml:LINE: key.path: reason`, read from the same YAML tree as
//! quarry.yml ([`crate::yaml`], the readers in `read` and `tls`).
//! Sections: `grid:` (the fleet's bounds), `provider:` (docs/providers.md),
//! `tls:` (docs/tls.md, `tls`), `network:` (the apps' subnet pool). Pure
//! but for reading the file.

mod read;
pub mod tls;

use std::path::PathBuf;

use crate::grid::Options;
use crate::store::Store;

/// The name config.yml's errors show.
const FILE: &str = "config.yml";

/// Why config.yml was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is there but could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax error, or a key or value refused: `config.yml:LINE: key.path: reason`.
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
    /// The `network:` pool or prefix, as [`crate::network::NetworkConfig::parsed`] words it.
    #[error(transparent)]
    Network(#[from] crate::network::NetConfigError),
}

/// `<data>/config.yml`. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub grid: GridConfig,
    pub provider: ProviderConfig,
    /// Certificates and HTTPS (docs/tls.md).
    pub tls: tls::TlsConfig,
    /// Where the apps' network subnets come from.
    pub network: crate::network::NetworkConfig,
}

/// The fleet's bounds (`grid:` in config.yml).
#[derive(Debug, Clone, PartialEq)]
pub struct GridConfig {
    pub autosize: bool,
    pub min: usize,
    pub max: Option<usize>,
    /// Seconds a provider's server must stay empty before it is removed.
    pub idle: u64,
}

impl Default for GridConfig {
    fn default() -> GridConfig {
        GridConfig {
            autosize: false,
            min: 1,
            max: None,
            idle: 60,
        }
    }
}

impl GridConfig {
    /// The grid's options for these bounds.
    pub fn options(&self) -> Options {
        Options {
            min: self.min,
            max: self.max.unwrap_or(usize::MAX),
            autosize: self.autosize,
        }
    }
}

/// Which provider answers the grid's events (`provider:` in config.yml).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ProviderConfig {
    /// Servers are added by hand only.
    #[default]
    Static,
    /// A program that speaks the JSON contract of docs/providers.md.
    Exec {
        command: PathBuf,
        args: Vec<String>,
        /// Seconds one request may take (default 300).
        timeout: Option<u64>,
        /// Provisioners its servers reached over SSH run before they take
        /// containers, in order.
        provision: Vec<String>,
    },
}

impl Config {
    /// Read `<data>/config.yml`; a missing file is the defaults.
    pub fn load(store: &Store) -> Result<Config, ConfigError> {
        let path = store.root().join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Config::parse(&text)
    }

    /// Reads config.yml's text; empty (or only comments) is the defaults.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let in_file = |e: crate::yaml::Error| ConfigError::Yaml(e.in_file(FILE));
        let Some(root) = crate::yaml::parse(text).map_err(in_file)? else {
            return Ok(Config::default());
        };
        let config = read::config(&crate::yaml::At::root(&root)).map_err(in_file)?;
        config.network.parsed()?;
        Ok(config)
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
