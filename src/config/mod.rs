//! `<data>/config.yml`: the instance's settings, read on each use so an
//! edit applies without a restart. Every key is optional; unknown keys are
//! refused with `config.yml:LINE: reason`. Sections: `grid:` (the fleet's
//! bounds), `provider:` (docs/providers.md), `tls:` (docs/tls.md, `tls`),
//! `network:` (the apps' subnet pool). Pure but for reading the file.

pub mod tls;

use std::path::PathBuf;

use serde::Deserialize;

use crate::grid::Options;
use crate::store::Store;

/// `<data>/config.yml`. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub grid: GridConfig,
    pub provider: ProviderConfig,
    /// Certificates and HTTPS (docs/tls.md).
    pub tls: tls::TlsConfig,
    /// Where the apps' network subnets come from.
    pub network: crate::network::NetworkConfig,
}

/// The fleet's bounds (`grid:` in config.yml).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
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
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Servers are added by hand only.
    #[default]
    Static,
    /// A program that speaks the JSON contract of docs/providers.md.
    Exec {
        command: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        /// Seconds one request may take (default 300).
        #[serde(default)]
        timeout: Option<u64>,
        /// Provisioners its servers reached over SSH run before they take
        /// containers, in order.
        #[serde(default)]
        provision: Vec<String>,
    },
}

impl Config {
    /// Read `<data>/config.yml`; a missing file is the defaults.
    pub fn load(store: &Store) -> Result<Config, String> {
        let path = store.root().join("config.yml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config =
            serde_saphyr::from_str(text).map_err(|e| parse_error(&e.to_string()))?;
        if let ProviderConfig::Exec { command, .. } = &config.provider
            && !command.is_absolute()
        {
            return Err(format!(
                "config.yml: provider.command: use an absolute path, found {}",
                command.display()
            ));
        }
        if config.grid.autosize && config.grid.max.is_none() {
            return Err(
                "config.yml: grid.autosize needs grid.max: the most servers the provider may add"
                    .to_string(),
            );
        }
        config.network.parsed()?;
        if let Some(max) = config.grid.max
            && max < config.grid.min
        {
            return Err(format!(
                "config.yml: grid.max ({max}) is below grid.min ({})",
                config.grid.min
            ));
        }
        Ok(config)
    }
}

/// `config.yml:LINE: reason` from the parser's multi-line report
/// (`error: line 2 column 3: reason --> <input>:2:3 | …`).
fn parse_error(report: &str) -> String {
    let first = report.lines().next().unwrap_or(report);
    let first = first.split(" --> ").next().unwrap_or(first);
    let first = first.trim_start_matches("error: ");
    let located = first.strip_prefix("line ").and_then(|rest| {
        let (line, rest) = rest.split_once(' ')?;
        let (_, reason) = rest.split_once(": ")?;
        Some(format!("config.yml:{line}: {}", reason.trim()))
    });
    located.unwrap_or_else(|| format!("config.yml: {}", one_line(first)))
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
