//! Parsing of the app commands with more than an app name: `apps:destroy`
//! (its confirmation), `ps:scale`, `ps:restart`, `config:get`, `config:set`,
//! `volumes:remove`, `certs:add`. Pure.

use std::collections::BTreeMap;

use super::args::{Args, app, app_and_optional, env_key, node};
use super::{CertFiles, Cmd, ParseError};
use crate::validate;

pub(super) fn destroy(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &["--force"], &[])?;
    let p = a.at_least(1)?;
    let name = app(p[0])?;
    let confirmed = match p.len() {
        1 => a.flag("--force"),
        2 => p[1] == p[0],
        _ => return Err(a.usage_error("too many arguments")),
    };
    if !confirmed {
        return Err(ParseError::usage(format!(
            "apps:destroy: this removes {name} for good; confirm with `apps:destroy {name} --force` or `apps:destroy {name} {name}`"
        )));
    }
    Ok(Cmd::AppsDestroy { app: name })
}

pub(super) fn scale(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.at_least(2)?;
    let mut scale = BTreeMap::new();
    for w in &p[1..] {
        let (n, count) = w
            .split_once('=')
            .ok_or_else(|| a.usage_error(&format!("expected NODE=N, found {w:?}")))?;
        let count: u32 = count.parse().ok().filter(|c| *c <= 100).ok_or_else(|| {
            a.usage_error(&format!(
                "{n}: scale must be a whole number from 0 to 100, found {count:?}"
            ))
        })?;
        scale.insert(node(n)?, count);
    }
    Ok(Cmd::PsScale {
        app: app(p[0])?,
        scale,
    })
}

pub(super) fn restart(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let (app, node_name) = app_and_optional(&a)?;
    Ok(Cmd::PsRestart {
        app,
        node: node_name.map(node).transpose()?,
    })
}

pub(super) fn config_get(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.exactly(2)?;
    Ok(Cmd::ConfigGet {
        app: app(p[0])?,
        key: env_key(p[1])?,
    })
}

pub(super) fn config_set(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.at_least(2)?;
    let mut vars = BTreeMap::new();
    for w in &p[1..] {
        let (k, v) = w.split_once('=').ok_or_else(|| {
            a.usage_error(&format!(
                "expected KEY=VALUE, found {:?}",
                w.chars().take(60).collect::<String>()
            ))
        })?;
        let k = env_key(k)?;
        validate::env_value(&k, v).map_err(|e| ParseError::usage(format!("{k}: {e}")))?;
        vars.insert(k, v.to_string());
    }
    Ok(Cmd::ConfigSet {
        app: app(p[0])?,
        vars,
    })
}

pub(super) fn volumes_remove(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.exactly(2)?;
    validate::process_name("service name", p[1]).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(Cmd::VolumesRemove {
        app: app(p[0])?,
        service: p[1].to_string(),
    })
}

pub(super) fn certs_add(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &["--cert", "--key"])?;
    let app = app(a.exactly(1)?[0])?;
    let file = |flag: &str, v: &str| {
        if v.starts_with('/') && v.len() <= 4096 && !v.split('/').any(|p| p == "..") {
            Ok(std::path::PathBuf::from(v))
        } else {
            Err(a.usage_error(&format!(
                "{flag} takes an absolute path on the Quarry host, found {v:?}"
            )))
        }
    };
    let files = match (a.options.get("--cert"), a.options.get("--key")) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(CertFiles {
            cert: file("--cert", cert)?,
            key: file("--key", key)?,
        }),
        (Some(_), None) | (None, Some(_)) => {
            return Err(a.usage_error("--cert and --key go together"));
        }
    };
    Ok(Cmd::CertsAdd { app, files })
}
