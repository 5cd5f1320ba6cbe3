//! Parsing of the fleet and access commands: `servers:info`, `servers:add`
//! (endpoint, address, size, labels, TLS files), `keys:add`, `keys:remove`.
//! Pure.

use std::collections::BTreeMap;

use super::args::{Args, app, server_name};
use super::{Cmd, NewServer, ParseError};
use crate::validate;

pub(super) fn servers_info(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &["--json"], &[])?;
    let name = a.exactly(1)?[0];
    validate::key_name(name)
        .map_err(|e| ParseError::usage(e.to_string().replace("key name", "server name")))?;
    Ok(Cmd::ServersInfo {
        name: name.to_string(),
        json: a.flag("--json"),
    })
}

pub(super) fn servers_add(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(
        command,
        words,
        &["--insecure"],
        &[
            "--docker",
            "--ssh",
            "--host-key",
            "--provision",
            "--address",
            "--memory",
            "--label",
            "--tls-ca",
            "--tls-cert",
            "--tls-key",
        ],
    )?;
    let name = server_name(a.exactly(1)?[0])?;
    let ssh = match (a.options.get("--ssh"), a.options.get("--docker")) {
        (Some(_), Some(_)) => {
            return Err(a.usage_error("--ssh and --docker exclude each other"));
        }
        (Some(t), None) => Some(Box::new(super::remote::ssh_target(
            &a,
            t,
            a.options.get("--host-key").copied(),
        )?)),
        (None, _) if a.options.contains_key("--host-key") => {
            return Err(a.usage_error("--host-key goes with --ssh"));
        }
        (None, _) => None,
    };
    let provision = a
        .all
        .iter()
        .filter(|(o, _)| *o == "--provision")
        .map(|(_, n)| {
            crate::provision::check_name(n)
                .map(|()| n.to_string())
                .map_err(|e| a.usage_error(&e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ssh.is_none() && !provision.is_empty() {
        return Err(a.usage_error("--provision runs over SSH: it needs --ssh"));
    }
    let docker = match &ssh {
        Some(_) => "unix:///",
        None => a
            .options
            .get("--docker")
            .copied()
            .ok_or_else(|| a.usage_error("--docker or --ssh is required"))?,
    };
    if !(docker.starts_with("unix:///") || docker.starts_with("tcp://"))
        || docker.len() > 512
        || docker.chars().any(char::is_whitespace)
    {
        return Err(a.usage_error(&format!(
            "--docker takes unix:///path.sock or tcp://host:port, found {docker:?}"
        )));
    }
    let address = match (a.options.get("--address"), &ssh) {
        (Some(address), _) => address
            .parse()
            .map_err(|_| a.usage_error("--address takes an IP address such as 10.0.0.5"))?,
        (None, Some(t)) => t
            .host
            .parse()
            .map_err(|_| a.usage_error("--address is required with a host name in --ssh"))?,
        (None, None) => return Err(a.usage_error("--address is required")),
    };
    let memory = a
        .options
        .get("--memory")
        .ok_or_else(|| a.usage_error("--memory is required"))?
        .parse::<u64>()
        .ok()
        .filter(|m| (64..=16 * 1024 * 1024).contains(m))
        .ok_or_else(|| a.usage_error("--memory takes MiB, from 64 to 16777216"))?;
    let mut labels = BTreeMap::new();
    for (opt, value) in &a.all {
        if *opt != "--label" {
            continue;
        }
        let (k, v) = value
            .split_once('=')
            .ok_or_else(|| a.usage_error(&format!("--label takes key=value, found {value:?}")))?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !ok(k) || !ok(v) {
            return Err(a.usage_error(&format!(
                "--label {value:?}: use letters, digits, '-', '_' and '.'"
            )));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let tls_flags = ["--tls-ca", "--tls-cert", "--tls-key"].map(|f| a.options.get(f));
    let tls = match tls_flags {
        [None, None, None] => None,
        [Some(ca), Some(cert), Some(key)] => {
            if !docker.starts_with("tcp://") {
                return Err(a.usage_error("--tls-* files are for a tcp:// --docker endpoint"));
            }
            let file = |flag: &str, v: &str| {
                if v.starts_with('/') && v.len() <= 4096 && !v.contains("/../") {
                    Ok(std::path::PathBuf::from(v))
                } else {
                    Err(a.usage_error(&format!(
                        "{flag} takes an absolute path on the Quarry host, found {v:?}"
                    )))
                }
            };
            Some(crate::endpoint::TlsFiles {
                ca: file("--tls-ca", ca)?,
                cert: file("--tls-cert", cert)?,
                key: file("--tls-key", key)?,
            })
        }
        _ => {
            return Err(a.usage_error("TLS needs all three of --tls-ca, --tls-cert and --tls-key"));
        }
    };
    let insecure = a.flag("--insecure");
    if ssh.is_some() && (insecure || tls.is_some()) {
        return Err(a.usage_error(
            "--insecure and --tls-* are for --docker tcp:// engines; --ssh needs neither",
        ));
    }
    crate::endpoint::check_transport(docker, tls.is_some(), insecure)
        .map_err(|e| a.usage_error(&e.to_string()))?;
    Ok(Cmd::ServersAdd(NewServer {
        name,
        docker: if ssh.is_some() {
            String::new()
        } else {
            docker.to_string()
        },
        address,
        memory,
        labels,
        tls,
        insecure,
        ssh,
        provision,
    }))
}

pub(super) fn keys_add(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &["--create"], &["--role", "--apps"])?;
    let name = a.exactly(1)?[0];
    validate::key_name(name).map_err(|e| ParseError::usage(e.to_string()))?;
    let role = match a.options.get("--role").copied() {
        Some("admin") => crate::store::Role::Admin,
        Some("deployer") => crate::store::Role::Deployer,
        Some(other) => {
            return Err(a.usage_error(&format!("--role is admin or deployer, found {other:?}")));
        }
        None => return Err(a.usage_error("--role is required")),
    };
    let apps = match a.options.get("--apps") {
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(app)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(Cmd::KeysAdd {
        name: name.to_string(),
        role,
        apps,
        create: a.flag("--create"),
    })
}

pub(super) fn keys_remove(command: &'static str, words: &[String]) -> Result<Cmd, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let name = a.exactly(1)?[0];
    validate::key_name(name).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(Cmd::KeysRemove {
        name: name.to_string(),
    })
}
