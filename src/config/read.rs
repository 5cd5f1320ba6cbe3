//! config.yml's sections read from the YAML tree ([`crate::yaml`]): `grid:`,
//! `provider:` and `network:` here, `tls:` in [`super::tls`]. Each section
//! knows its keys (any other is refused at its line), checks each value's
//! type and range, and leaves what it does not say at its default; null is
//! the same as leaving a key out. Pure.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::{Config, GridConfig, ProviderConfig, tls};
use crate::network::NetworkConfig;
use crate::yaml::{At, Error, Fields, Kind, Value};

/// Servers in a fleet (`grid.min`, `grid.max`).
const SERVERS: RangeInclusive<u64> = 0..=10_000;
/// `grid.idle`: up to a year.
const IDLE_SECONDS: RangeInclusive<u64> = 0..=31_536_000;
/// `provider.timeout`: up to a day.
const TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=86_400;
/// `network.prefix`: any IPv4 prefix length; the network's own check narrows it.
const PREFIX: RangeInclusive<u64> = 0..=32;

/// The whole file, its sections checked against each other.
pub(super) fn config(root: &At) -> Result<Config, Error> {
    let f = root.fields(&["grid", "provider", "tls", "network"])?;
    let config = Config {
        grid: set(&f, "grid", grid)?.unwrap_or_default(),
        provider: set(&f, "provider", provider)?.unwrap_or_default(),
        tls: set(&f, "tls", tls::read)?.unwrap_or_default(),
        network: set(&f, "network", network)?.unwrap_or_default(),
    };
    if config.grid.autosize && config.grid.max.is_none() {
        return Err(Error::new(
            None,
            "",
            "grid.autosize needs grid.max: the most servers the provider may add",
        ));
    }
    if let Some(max) = config.grid.max
        && max < config.grid.min
    {
        return Err(Error::new(
            None,
            "",
            format!("grid.max ({max}) is below grid.min ({})", config.grid.min),
        ));
    }
    Ok(config)
}

/// `key` read with `read` if it is there and not null.
pub(super) fn set<'a, T>(
    f: &Fields<'a>,
    key: &str,
    read: impl FnOnce(&At<'a>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    match f.get(key) {
        Some(at) if !is_null(at) => read(at).map(Some),
        _ => Ok(None),
    }
}

fn is_null(at: &At) -> bool {
    matches!(
        at.node.value,
        Value::Scalar {
            kind: Kind::Null,
            ..
        }
    )
}

fn count(at: &At) -> Result<usize, Error> {
    // SERVERS fits in a usize on every target Quarry builds for.
    at.u64(SERVERS)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn grid(at: &At) -> Result<GridConfig, Error> {
    let f = at.fields(&["autosize", "min", "max", "idle"])?;
    let default = GridConfig::default();
    Ok(GridConfig {
        autosize: set(&f, "autosize", At::bool)?.unwrap_or(default.autosize),
        min: set(&f, "min", count)?.unwrap_or(default.min),
        max: set(&f, "max", count)?,
        idle: set(&f, "idle", |at| at.u64(IDLE_SECONDS))?.unwrap_or(default.idle),
    })
}

fn provider(at: &At) -> Result<ProviderConfig, Error> {
    let f = at.fields(&["kind", "command", "args", "timeout", "provision"])?;
    let Some(kind) = f.get("kind") else {
        return Err(at.fail("expected kind: static or exec"));
    };
    match kind.string()? {
        "static" => {
            if let Some(key) = ["command", "args", "timeout", "provision"]
                .into_iter()
                .find(|key| f.get(key).is_some())
            {
                return Err(f.get(key).unwrap_or(kind).fail("only for kind: exec"));
            }
            Ok(ProviderConfig::Static)
        }
        "exec" => {
            let Some(command) = f.get("command").filter(|at| !is_null(at)) else {
                return Err(at.fail("kind: exec needs command: the provider program's path"));
            };
            let path = PathBuf::from(command.string()?);
            if !path.is_absolute() {
                return Err(command.fail(format!("use an absolute path, found {}", path.display())));
            }
            Ok(ProviderConfig::Exec {
                command: path,
                args: set(&f, "args", strings)?.unwrap_or_default(),
                timeout: set(&f, "timeout", |at| at.u64(TIMEOUT_SECONDS))?,
                provision: set(&f, "provision", strings)?.unwrap_or_default(),
            })
        }
        _ => Err(kind.expected("static or exec")),
    }
}

fn network(at: &At) -> Result<NetworkConfig, Error> {
    let f = at.fields(&["pool", "prefix", "lockdown", "allow"])?;
    let default = NetworkConfig::default();
    let prefix = set(&f, "prefix", |at| at.u64(PREFIX))?;
    Ok(NetworkConfig {
        pool: set(&f, "pool", |at| at.string().map(str::to_owned))?.unwrap_or(default.pool),
        // PREFIX fits in a u8.
        prefix: prefix.map_or(default.prefix, |p| u8::try_from(p).unwrap_or(u8::MAX)),
        lockdown: set(&f, "lockdown", At::bool)?.unwrap_or(default.lockdown),
        allow: set(&f, "allow", strings)?.unwrap_or(default.allow),
    })
}

/// A list of scalars, each read as text (`args: [--region, 3]`).
fn strings(at: &At) -> Result<Vec<String>, Error> {
    at.items()?
        .iter()
        .map(|item| item.text().map(str::to_owned))
        .collect()
}
