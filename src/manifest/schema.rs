//! The quarry.yml schema: reads the YAML tree into a validated [`Manifest`].
//!
//! Every key is looked up by name from a fixed list, every value checked for
//! its type and range, and every refusal names the line and key path. Name
//! rules come from [`crate::validate`]; the rules for values that only
//! quarry.yml has (images, volumes, labels) live here. Pure.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::{
    Build, Command, Deploy, HealthCheck, Manifest, ManifestError, Node, NodeKind, Placement,
    Releases, Service, ServiceSource,
};
use crate::validate;
use crate::yaml::{self, At, Value};

const SCALE: RangeInclusive<u32> = 0..=100;
const MEMORY_MIB: RangeInclusive<u32> = 4..=1_048_576;
const PORT: RangeInclusive<u32> = 1..=65_535;
const SECONDS: RangeInclusive<u32> = 1..=3_600;
const DRAIN_SECONDS: RangeInclusive<u32> = 0..=3_600;
/// `build.timeout`, seconds; the daemon's own maximum may be lower.
const BUILD_TIMEOUT_SECONDS: RangeInclusive<u32> = 1..=86_400;
const ATTEMPTS: RangeInclusive<u32> = 1..=1_000;
const BATCH: RangeInclusive<u32> = 1..=100;
const KEEP: RangeInclusive<u32> = 1..=1_000;

/// Reads quarry.yml's text (already checked for size) into a [`Manifest`].
pub(super) fn read(text: &str) -> Result<Manifest, ManifestError> {
    let empty = yaml::Yaml {
        line: 1,
        value: Value::Map(Vec::new()),
    };
    let root = yaml::parse(text)?;
    let root = At::root(root.as_ref().unwrap_or(&empty));
    let f = root.fields(&[
        "env", "services", "nodes", "release", "build", "deploy", "releases", "cron",
    ])?;

    let env = f.read("env", env)?.unwrap_or_default();
    let mut services = BTreeMap::new();
    if let Some(at) = f.get("services") {
        for (name, at) in at.entries()? {
            services.insert(name.to_owned(), service(name, &at)?);
        }
    }
    let mut nodes = BTreeMap::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    if let Some(at) = f.get("nodes") {
        for (name, at) in at.entries()? {
            nodes.insert(name.to_owned(), node(name, &at, &services, &mut claimed)?);
        }
    }
    if nodes.is_empty() {
        let line = f.get("nodes").map(|at| at.line);
        return Err(ManifestError::new(
            line,
            "nodes",
            "at least one node is needed",
        ));
    }

    let mut build = Build::default();
    if let Some(at) = f.get("build") {
        let f = at.fields(&["buildpack", "timeout"])?;
        build.buildpack = f.read("buildpack", buildpack)?;
        build.timeout = f.int("timeout", BUILD_TIMEOUT_SECONDS)?;
    }
    let mut deploy = Deploy::default();
    if let Some(at) = f.get("deploy") {
        let f = at.fields(&["batch", "drain"])?;
        deploy.batch = f.int("batch", BATCH)?;
        deploy.drain = f.int("drain", DRAIN_SECONDS)?.unwrap_or(deploy.drain);
    }
    let mut releases = Releases::default();
    if let Some(at) = f.get("releases") {
        releases.keep = at
            .fields(&["keep"])?
            .int("keep", KEEP)?
            .unwrap_or(releases.keep);
    }
    let cron = match f.get("cron") {
        Some(at) => super::cron::jobs(at, &nodes)?,
        None => BTreeMap::new(),
    };
    Ok(Manifest {
        cron,
        env,
        services,
        nodes,
        release: f.read("release", command)?,
        build,
        deploy,
        releases,
    })
}

/// `claimed` maps each domain seen so far to its node: nginx routes a domain to one node only.
fn node(
    name: &str,
    at: &At,
    services: &BTreeMap<String, Service>,
    claimed: &mut BTreeMap<String, String>,
) -> Result<Node, ManifestError> {
    validate::process_name("node name", name).map_err(|e| at.fail(e.to_string()))?;
    if services.contains_key(name) {
        return Err(at.fail(format!("{name} is already the name of a service")));
    }
    if name == "release" {
        return Err(at.fail("release is kept for the release command, use another name"));
    }
    let f = at.fields(&[
        "type",
        "command",
        "scale",
        "memory",
        "domains",
        "healthcheck",
        "env",
        "placement",
    ])?;
    let kind = match f.get("type") {
        None => NodeKind::for_name(name),
        Some(at) => match at.string() {
            Ok("web") => NodeKind::Web,
            Ok("worker") => NodeKind::Worker,
            _ => return Err(at.expected("web or worker")),
        },
    };
    let mut node = Node::new(kind);
    node.command = f.read("command", command)?;
    node.scale = f.int("scale", SCALE)?.unwrap_or(node.scale);
    node.memory = f.int("memory", MEMORY_MIB)?;
    node.env = f.read("env", env)?.unwrap_or_default();
    if let Some(at) = f.get("domains") {
        if kind != NodeKind::Web && !at.items()?.is_empty() {
            return Err(at.fail("only a web node has domains"));
        }
        for item in at.items()? {
            let domain = item.string()?;
            let parsed = validate::domain(domain).map_err(|e| item.fail(e.to_string()))?;
            if node.domains.iter().any(|d| d == domain) {
                return Err(item.fail(format!("{domain} is listed twice")));
            }
            if let Some(other) = claimed.insert(domain.to_owned(), name.to_owned()) {
                return Err(item.fail(format!("{domain} is already a domain of node {other}")));
            }
            node.domains.push(parsed);
        }
    }
    if let Some(at) = f.get("healthcheck") {
        if kind != NodeKind::Web {
            return Err(at.fail("only a web node has a health check"));
        }
        node.healthcheck = Some(healthcheck(at)?);
    }
    if let Some(at) = f.get("placement") {
        node.placement = placement(at)?;
    }
    Ok(node)
}

/// `placement: {labels: {k: v}}`.
fn placement(at: &At) -> Result<Placement, ManifestError> {
    let mut placement = Placement::default();
    let f = at.fields(&["labels"])?;
    if let Some(at) = f.get("labels") {
        for (key, at) in at.entries()? {
            label_key(&at, key)?;
            let value = at.text()?;
            label_value(&at, value)?;
            placement.labels.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(placement)
}

fn healthcheck(at: &At) -> Result<HealthCheck, ManifestError> {
    let f = at.fields(&["path", "tcp", "timeout", "interval", "attempts"])?;
    let mut check = HealthCheck::default();
    if let Some(at) = f.get("path") {
        let path = at.string()?;
        if !path.starts_with('/') {
            return Err(at.fail(format!("must start with '/', found {path:?}")));
        }
        if path.len() > 1024 || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(at.fail(format!(
                "use at most 1024 printable characters without spaces, found {path:?}"
            )));
        }
        check.path = Some(path.to_owned());
    }
    check.tcp = f.read("tcp", At::bool)?.unwrap_or(check.tcp);
    if check.tcp && check.path.is_some() {
        return Err(f.at.fail("use either path or tcp: true, not both"));
    }
    check.timeout = f.int("timeout", SECONDS)?.unwrap_or(check.timeout);
    check.interval = f.int("interval", SECONDS)?.unwrap_or(check.interval);
    check.attempts = f.int("attempts", ATTEMPTS)?;
    Ok(check)
}

fn service(name: &str, at: &At) -> Result<Service, ManifestError> {
    validate::process_name("service name", name).map_err(|e| at.fail(e.to_string()))?;
    let f = at.fields(&[
        "image",
        "build",
        "port",
        "volumes",
        "command",
        "env",
        "memory",
        "placement",
    ])?;
    let source = match (f.get("image"), f.get("build")) {
        (Some(at), None) => ServiceSource::Image(image(at)?),
        (None, Some(at)) => ServiceSource::Build(build_dir(at)?),
        (Some(_), Some(_)) => return Err(at.fail("use either image or build, not both")),
        (None, None) => return Err(at.fail("needs an image or a build directory")),
    };
    let port = f.int("port", PORT)?;
    let mut volumes: Vec<String> = Vec::new();
    if let Some(at) = f.get("volumes") {
        for item in at.items()? {
            let volume = item.string()?;
            volume_path(&item, volume)?;
            if volumes.iter().any(|v| v == volume) {
                return Err(item.fail(format!("{volume} is listed twice")));
            }
            volumes.push(volume.to_owned());
        }
    }
    Ok(Service {
        source,
        // Always fits: PORT is within u16.
        port: port.map(|p| u16::try_from(p).unwrap_or(u16::MAX)),
        volumes,
        command: f.read("command", command)?,
        env: f.read("env", env)?.unwrap_or_default(),
        memory: f.int("memory", MEMORY_MIB)?,
        placement: match f.get("placement") {
            Some(at) => placement(at)?,
            None => Placement::default(),
        },
    })
}

/// A string runs with a shell; a list runs as is, its items read as text (`[sleep, 10]`).
pub(super) fn command(at: &At) -> Result<Command, ManifestError> {
    let no_nul = |at: &At, s: &str| {
        if s.contains('\0') {
            Err(at.fail("contains a NUL byte"))
        } else {
            Ok(())
        }
    };
    match &at.node.value {
        Value::List(_) => {
            let items = at.items()?;
            let mut argv = Vec::with_capacity(items.len());
            for item in &items {
                let arg = item.text()?;
                no_nul(item, arg)?;
                argv.push(arg.to_owned());
            }
            match argv.first() {
                None => Err(at.fail("the command is empty")),
                Some(program) if program.trim().is_empty() => {
                    Err(items[0].fail("the program name is empty"))
                }
                Some(_) => Ok(Command::Exec(argv)),
            }
        }
        Value::Scalar {
            kind: yaml::Kind::Str,
            text,
        } => {
            no_nul(at, text)?;
            if text.trim().is_empty() {
                return Err(at.fail("the command is empty"));
            }
            Ok(Command::Shell(text.clone()))
        }
        Value::Scalar { .. } | Value::Map(_) => Err(at.expected("a string or a list")),
    }
}

fn env(at: &At) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut env = BTreeMap::new();
    for (key, at) in at.entries()? {
        validate::env_key(key).map_err(|e| at.fail(e.to_string()))?;
        let value = at.text()?;
        validate::env_value(key, value).map_err(|e| at.fail(e.to_string()))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    Ok(env)
}

/// An image reference as Docker reads it: `[registry/]name[:tag][@digest]`.
fn image(at: &At) -> Result<String, ManifestError> {
    let image = at.string()?;
    let ok = !image.is_empty()
        && image.len() <= 255
        && image.as_bytes()[0].is_ascii_alphanumeric()
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if !ok {
        return Err(at.fail(format!(
            "invalid image {image:?}: use a name such as redis:7 (letters, digits, '.', '_', '-', '/', ':' and '@')"
        )));
    }
    Ok(image.to_owned())
}

/// A directory inside the repository: relative, and never climbing out.
fn build_dir(at: &At) -> Result<String, ManifestError> {
    let dir = at.string()?;
    if dir.is_empty() || dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
        return Err(at.fail(format!(
            "use a directory inside the repository, such as services/cache (relative, without '..'), found {dir:?}"
        )));
    }
    if dir.chars().any(char::is_control) {
        return Err(at.fail(format!("contains a control character, found {dir:?}")));
    }
    Ok(dir.to_owned())
}

fn buildpack(at: &At) -> Result<String, ManifestError> {
    let pack = at.string()?;
    // It may reach `git clone` as an argument: no option look-alikes, no spaces.
    if pack.is_empty()
        || pack.starts_with('-')
        || pack.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(at.fail(format!(
            "use a built-in buildpack name, a path or a git URL, without spaces or a leading '-', found {pack:?}"
        )));
    }
    Ok(pack.to_owned())
}

/// A volume's mount point inside the container.
fn volume_path(at: &At, path: &str) -> Result<(), ManifestError> {
    let ok = path.starts_with('/')
        && path != "/"
        && path.len() <= 4096
        && !path.split('/').any(|part| part == "..")
        // ':' and ',' would be read as mount options by Docker.
        && !path.contains([':', ','])
        && !path.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(at.fail(format!(
            "use an absolute path inside the container such as /data (not /, without '..', ':' or ','), found {path:?}"
        )))
    }
}

/// A placement label key, matched against server labels: `[a-z0-9][a-z0-9._/-]{0,62}`.
fn label_key(at: &At, key: &str) -> Result<(), ManifestError> {
    let b = key.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._/-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(at.fail(format!(
            "invalid label key {key:?}: use 1-63 lower-case letters, digits, '.', '_', '/' and '-', starting with a letter or digit"
        )))
    }
}

/// A placement label value: `[A-Za-z0-9._-]{0,63}`.
fn label_value(at: &At, value: &str) -> Result<(), ManifestError> {
    let ok = value.len() <= 63
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(at.fail(format!(
            "invalid label value {value:?}: use at most 63 letters, digits, '.', '_' and '-'"
        )))
    }
}
