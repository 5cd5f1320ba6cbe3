//! The one YAML reader of Quarry (quarry.yml, config.yml, a buildpack's
//! `bin/release`): text → a small tree that remembers the line of every node
//! and key ([`Yaml`]), and a cursor ([`At`]) that reads the tree while
//! carrying the key path, so every error can say `file:line: key.path: reason`.
//!
//! Serde's derived errors know neither the key path nor our wording, so the
//! tree is built from the parser's events (granit-parser, the parser under
//! serde-saphyr) and each file is read from it by hand: unknown keys, wrong
//! types and bad values are refused by the reader, never by scraping a
//! parser's message. Anchors and aliases are expanded under a node and byte
//! budget; tags other than `!!str` and merge keys are refused. Pure: no I/O.

mod at;
mod scalar;
mod tree;

pub use at::{At, Fields};
pub use scalar::describe;
pub use tree::{Entry, Kind, Value, Yaml, parse};

use std::fmt;

/// Why a YAML file was refused: `file:line: key.path: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The name shown to the user, such as `quarry.yml`.
    pub file: String,
    /// 1-based; `None` when the problem is the file as a whole or a missing key.
    pub line: Option<usize>,
    /// Such as `nodes.web.scale`; empty for syntax errors.
    pub path: String,
    pub reason: String,
}

impl Error {
    /// An error whose file is filled in by the reader's entry point ([`Error::in_file`]).
    pub fn new(line: Option<usize>, path: &str, reason: impl Into<String>) -> Error {
        Error {
            file: String::new(),
            line,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The same error, shown as coming from `file`.
    pub fn in_file(mut self, file: &str) -> Error {
        file.clone_into(&mut self.file);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for Error {}

/// A path segment is shown bare when it is a plain word, quoted otherwise.
pub fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}
