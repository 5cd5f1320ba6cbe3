//! Which runtime a Python or Node build runs, and so on which stack: the
//! table of Debian suites and the runtimes they ship.
//!
//! The runtimes come from Debian: each suite's stack image ships one Python
//! and one Node (forky adds a second Python from its own packages). The app's
//! request is read the way Heroku reads it — Python: `.python-version`, then
//! `runtime.txt`, then Pipfile.lock's `_meta.requires`, then pyproject.toml
//! `requires-python`; Node: package.json
//! `engines.node`, then `.nvmrc` / `.node-version` — and the oldest suite
//! whose runtime satisfies it is chosen. A request no suite satisfies is
//! refused in one line naming the file, the version and what there is.
//! [`SUITES`] is the one table of suites and runtimes. Reads the pushed tree
//! only through [`crate::confined`] (no link followed, size-capped); the
//! choice itself is pure.

use std::fmt;
use std::path::Path;

mod versions;

pub use versions::{RangeError, Release};

/// A Debian suite's stack and the runtimes its packages give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    pub name: &'static str,
    /// Pythons, `python3` first; the others are `python3.X` packages.
    pub pythons: &'static [[u64; 3]],
    pub node: [u64; 3],
    /// Packages the stack installs besides the usual ones (for `pythons[1..]`).
    pub extra_packages: &'static [&'static str],
}

/// The suites, oldest first (versions as Debian ships them, Nov 2026).
pub const SUITES: &[Suite] = &[
    Suite {
        name: "bookworm",
        pythons: &[[3, 11, 2]],
        node: [18, 19, 0],
        extra_packages: &[],
    },
    Suite {
        name: "trixie",
        pythons: &[[3, 13, 5]],
        node: [20, 19, 2],
        extra_packages: &[],
    },
    Suite {
        name: "forky",
        pythons: &[[3, 14, 8], [3, 15, 0]],
        node: [24, 21, 0],
        extra_packages: &["python3.15", "python3.15-venv"],
    },
];

/// The suite used when nothing is asked for.
pub const DEFAULT_SUITE: &str = "bookworm";

/// The suite of this name, if it is one of [`SUITES`].
pub fn suite(name: &str) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.name == name)
}

/// The language whose runtime is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    Node,
}

impl Language {
    /// The language of a buildpack, by its name (built-ins only).
    pub fn of_buildpack(name: &str) -> Option<Language> {
        match name {
            "python" => Some(Language::Python),
            "node" => Some(Language::Node),
            _ => None,
        }
    }
    fn title(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::Node => "Node",
        }
    }
}

/// What the app asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A version whose first parts must match: `3.13` or `3.13.1` (matched
    /// on 3.13: Debian ships its own patch release), Node `20`.
    Line(Release),
    /// A PEP 440 specifier set.
    Pep440(String),
    /// An npm semver range.
    Npm(String),
}

/// A request: where it was read and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `.python-version`, `runtime.txt`, `pyproject.toml requires-python`, …
    pub file: &'static str,
    /// As written (trimmed).
    pub text: String,
    pub wanted: Wanted,
}

/// The runtime chosen for a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub language: Language,
    pub suite: &'static Suite,
    pub version: [u64; 3],
    /// The interpreter to run: `python3`, `python3.15`, `node`.
    pub binary: String,
    /// What asked for it; `None` for the default.
    pub request: Option<Request>,
}

impl Choice {
    /// `Python 3.13 (from .python-version 3.13) on quarry-stack/trixie`.
    pub fn describe(&self, stack: &str) -> String {
        let why = match &self.request {
            Some(r) => format!("from {} {}", r.file, r.text),
            None => "the default".to_string(),
        };
        format!(
            "{} {} ({why}) on {stack}",
            self.language.title(),
            self.short()
        )
    }
    /// `3.13` / `20`.
    pub fn short(&self) -> String {
        match self.language {
            Language::Python => format!("{}.{}", self.version[0], self.version[1]),
            Language::Node => self.version[0].to_string(),
        }
    }
}

/// Why no runtime could be chosen; each is one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("{file}: {language} {text} is not available; available: {available}")]
    Unavailable {
        file: &'static str,
        language: &'static str,
        text: String,
        available: String,
    },
    #[error("{file}: {why}")]
    Unreadable { file: &'static str, why: String },
}

/// `3.11 (bookworm), 3.13 (trixie), 3.14, 3.15 (forky)`.
pub fn available(language: Language) -> String {
    SUITES
        .iter()
        .map(|s| {
            let versions: Vec<String> = match language {
                Language::Python => s
                    .pythons
                    .iter()
                    .map(|v| format!("{}.{}", v[0], v[1]))
                    .collect(),
                Language::Node => vec![s.node[0].to_string()],
            };
            format!("{} ({})", versions.join(", "), s.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runtime for `request` (the default suite's without one).
pub fn choose(language: Language, request: Option<Request>) -> Result<Choice, RuntimeError> {
    let candidates = SUITES.iter().flat_map(|s| {
        let versions: Vec<(usize, [u64; 3])> = match language {
            Language::Python => s.pythons.iter().copied().enumerate().collect(),
            Language::Node => vec![(0, s.node)],
        };
        versions.into_iter().map(move |(i, v)| (s, i, v))
    });
    let mut found = None;
    for (suite, index, version) in candidates {
        let ok = match request.as_ref().map(|r| (&r.wanted, r)) {
            None => suite.name == DEFAULT_SUITE,
            Some((Wanted::Line(want), _)) => want.iter().zip(version).all(|(a, b)| *a == b),
            Some((Wanted::Pep440(spec), r)) => {
                versions::pep440_matches(spec, &version).map_err(|e| unreadable(r.file, e))?
            }
            Some((Wanted::Npm(range), r)) => {
                versions::npm_matches(range, &version).map_err(|e| unreadable(r.file, e))?
            }
        };
        if ok {
            found = Some((suite, index, version));
            break;
        }
    }
    let Some((suite, index, version)) = found else {
        let r = request.expect("the default suite has every runtime");
        return Err(RuntimeError::Unavailable {
            file: r.file,
            language: language.title(),
            text: r.text,
            available: available(language),
        });
    };
    let binary = match (language, index) {
        (Language::Python, 0) => "python3".to_string(),
        (Language::Python, _) => format!("python{}.{}", version[0], version[1]),
        (Language::Node, _) => "node".to_string(),
    };
    Ok(Choice {
        language,
        suite,
        version,
        binary,
        request,
    })
}

fn unreadable(file: &'static str, e: impl fmt::Display) -> RuntimeError {
    RuntimeError::Unreadable {
        file,
        why: e.to_string(),
    }
}

/// Largest version file read (`.python-version`, `runtime.txt`, `.nvmrc`).
const MAX_VERSION_FILE: u64 = 4 * 1024;
/// Largest pyproject.toml / package.json read.
const MAX_MANIFEST: u64 = 1024 * 1024;

/// Read `rel` from the pushed tree `dir`: no link followed, size-capped.
fn read(dir: &Path, rel: &'static str, limit: u64) -> Result<Option<String>, RuntimeError> {
    crate::confined::read_file(dir, rel, limit)
        .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| unreadable(rel, e))
}

/// The first line that is not empty or a comment.
fn first_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// A `3.13` / `3.13.1` line (Python wants at least major.minor).
fn python_line(file: &'static str, text: &str) -> Result<Request, RuntimeError> {
    let release = versions::parse_release(text)
        .filter(|r| (2..=3).contains(&r.len()) && !text.starts_with('v'))
        .ok_or_else(|| {
            unreadable(
                file,
                format!("{text:?} is not a Python version (write e.g. 3.13)"),
            )
        })?;
    Ok(Request {
        file,
        text: text.to_string(),
        wanted: Wanted::Line(release[..2].to_vec()),
    })
}

/// What a Python app in `dir` asks for, in Heroku's order.
pub fn python_request(dir: &Path) -> Result<Option<Request>, RuntimeError> {
    if let Some(text) = read(dir, ".python-version", MAX_VERSION_FILE)?
        && let Some(line) = first_line(&text)
    {
        return python_line(".python-version", line).map(Some);
    }
    if let Some(text) = read(dir, "runtime.txt", MAX_VERSION_FILE)?
        && let Some(line) = first_line(&text)
    {
        let version = line.strip_prefix("python-").ok_or_else(|| {
            unreadable(
                "runtime.txt",
                format!("{line:?} is not python-X.Y.Z (write e.g. python-3.13.1)"),
            )
        })?;
        let mut r = python_line("runtime.txt", version)?;
        r.text = line.to_string();
        return Ok(Some(r));
    }
    if let Some(text) = read(dir, "Pipfile.lock", MAX_MANIFEST)?
        && let Some((file, version)) = pipfile_lock_python(&text)
    {
        return python_line(file, &version).map(Some);
    }
    if let Some(text) = read(dir, "pyproject.toml", MAX_MANIFEST)?
        && let Some(spec) = requires_python(&text)
    {
        return Ok(Some(Request {
            file: "pyproject.toml requires-python",
            text: spec.clone(),
            wanted: Wanted::Pep440(spec),
        }));
    }
    Ok(None)
}

/// The Python a Pipfile.lock was locked for, as pipenv writes it from the
/// Pipfile's `[requires]`: `_meta.requires.python_full_version`, else
/// `python_version`. An unreadable lock is pipenv's to report.
fn pipfile_lock_python(text: &str) -> Option<(&'static str, String)> {
    let lock = serde_json::from_str::<serde_json::Value>(text).ok()?;
    let requires = lock.get("_meta")?.get("requires")?;
    [
        ("Pipfile.lock python_full_version", "python_full_version"),
        ("Pipfile.lock python_version", "python_version"),
    ]
    .into_iter()
    .find_map(|(file, key)| {
        let v = requires.get(key)?.as_str()?.trim();
        (!v.is_empty()).then(|| (file, v.to_string()))
    })
}

/// `[project] requires-python = "…"` from pyproject.toml's text: a line
/// scan of the `[project]` table (a plain or literal one-line string).
pub fn requires_python(toml: &str) -> Option<String> {
    let mut in_project = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_project = line.split('#').next().map(str::trim) == Some("[project]");
            continue;
        }
        let Some(rest) = line.strip_prefix("requires-python") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        if !in_project {
            continue;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let body = &value[1..];
        return body.find(quote).map(|end| body[..end].trim().to_string());
    }
    None
}

/// What a Node app in `dir` asks for: package.json `engines.node`, then
/// `.nvmrc`, then `.node-version`. `lts/*`, `node` and `latest` ask for nothing.
pub fn node_request(dir: &Path) -> Result<Option<Request>, RuntimeError> {
    if let Some(text) = read(dir, "package.json", MAX_MANIFEST)? {
        // An unreadable package.json is npm's to report, with its own words.
        let engines = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("engines")?.get("node")?.as_str().map(str::to_string));
        if let Some(range) = engines.map(|r| r.trim().to_string()) {
            return Ok(Some(Request {
                file: "package.json engines.node",
                text: range.clone(),
                wanted: Wanted::Npm(range),
            }));
        }
    }
    for file in [".nvmrc", ".node-version"] {
        if let Some(text) = read(dir, file, MAX_VERSION_FILE)?
            && let Some(line) = first_line(&text)
        {
            if matches!(line, "node" | "latest" | "stable") || line.starts_with("lts/") {
                return Ok(None);
            }
            // `v20.11.0` asks for Node 20: Debian ships its own release of it.
            let wanted = match versions::parse_release(line) {
                Some(r) => Wanted::Line(r[..1].to_vec()),
                None => Wanted::Npm(line.to_string()),
            };
            return Ok(Some(Request {
                file,
                text: line.to_string(),
                wanted,
            }));
        }
    }
    Ok(None)
}

/// The request of `language`'s app in `dir`.
pub fn request(language: Language, dir: &Path) -> Result<Option<Request>, RuntimeError> {
    match language {
        Language::Python => python_request(dir),
        Language::Node => node_request(dir),
    }
}

#[cfg(test)]
mod tests;
