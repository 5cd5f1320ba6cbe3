//! The cursor that reads a [`Yaml`] tree: each [`At`] carries the key path
//! and the line its errors point at, and reads mappings with fixed or free
//! keys, lists, strings, booleans and integers in a range. Pure.

use std::ops::RangeInclusive;

use super::scalar::{describe, parse_int};
use super::tree::{Kind, Value, Yaml};
use super::{Error, child_path};

/// A node being read, with its key path and the line errors point at (the
/// key's line for a mapping entry, the node's own line otherwise).
#[derive(Debug, Clone)]
pub struct At<'a> {
    pub node: &'a Yaml,
    pub path: String,
    pub line: usize,
}

impl<'a> At<'a> {
    pub fn root(node: &'a Yaml) -> At<'a> {
        At {
            node,
            path: String::new(),
            line: node.line,
        }
    }

    pub fn fail(&self, reason: impl Into<String>) -> Error {
        Error::new(Some(self.line), &self.path, reason)
    }

    pub fn expected(&self, what: &str) -> Error {
        self.fail(format!("expected {what}, found {}", describe(self.node)))
    }

    fn is_null(&self) -> bool {
        matches!(
            self.node.value,
            Value::Scalar {
                kind: Kind::Null,
                ..
            }
        )
    }

    /// The entries of a mapping with free keys (names, env keys); null reads as empty.
    pub fn entries(&self) -> Result<Vec<(&'a str, At<'a>)>, Error> {
        match &self.node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|e| {
                    let at = At {
                        node: &e.value,
                        path: child_path(&self.path, &e.key),
                        line: e.line,
                    };
                    // YAML 1.1 merge keys: not part of YAML 1.2, and they would
                    // hide where a value came from.
                    if e.key == "<<" {
                        return Err(at.fail("merge keys (<<) are not supported"));
                    }
                    Ok((e.key.as_str(), at))
                })
                .collect(),
            Value::Scalar { .. } | Value::List(_) if self.is_null() => Ok(Vec::new()),
            Value::Scalar { .. } | Value::List(_) => Err(self.expected("a mapping")),
        }
    }

    /// A mapping with a fixed set of keys; any other key is an error.
    pub fn fields(&self, known: &[&str]) -> Result<Fields<'a>, Error> {
        let entries = self.entries()?;
        if let Some((_, at)) = entries.iter().find(|(key, _)| !known.contains(key)) {
            return Err(at.fail(match known {
                [only] => format!("unknown field, expected {only}"),
                _ => format!("unknown field, expected one of {}", known.join(", ")),
            }));
        }
        Ok(Fields {
            at: self.clone(),
            entries,
        })
    }

    /// The items of a list; null reads as empty.
    pub fn items(&self) -> Result<Vec<At<'a>>, Error> {
        match &self.node.value {
            Value::List(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, node)| At {
                    node,
                    path: format!("{}[{i}]", self.path),
                    line: node.line,
                })
                .collect()),
            Value::Scalar { .. } | Value::Map(_) if self.is_null() => Ok(Vec::new()),
            Value::Scalar { .. } | Value::Map(_) => Err(self.expected("a list")),
        }
    }

    /// A string, and only a string.
    pub fn string(&self) -> Result<&'a str, Error> {
        match &self.node.value {
            Value::Scalar {
                text,
                kind: Kind::Str,
            } => Ok(text),
            Value::Scalar { .. } | Value::List(_) | Value::Map(_) => Err(self.expected("a string")),
        }
    }

    /// A scalar read as text: strings, and numbers or booleans as written (`PORT: 80`).
    pub fn text(&self) -> Result<&'a str, Error> {
        match &self.node.value {
            Value::Scalar { text, kind } if *kind != Kind::Null => Ok(text),
            Value::Scalar { .. } | Value::List(_) | Value::Map(_) => Err(self.expected("a string")),
        }
    }

    pub fn bool(&self) -> Result<bool, Error> {
        match &self.node.value {
            Value::Scalar {
                text,
                kind: Kind::Bool,
            } => Ok(text.eq_ignore_ascii_case("true")),
            Value::Scalar { .. } | Value::List(_) | Value::Map(_) => {
                Err(self.expected("true or false"))
            }
        }
    }

    pub fn int(&self, range: RangeInclusive<u32>) -> Result<u32, Error> {
        let wide = u64::from(*range.start())..=u64::from(*range.end());
        // In range of a u32, so the narrowing cannot fail.
        self.u64(wide).map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    }

    /// An integer in `range`, for the settings wider than a u32 holds.
    pub fn u64(&self, range: RangeInclusive<u64>) -> Result<u64, Error> {
        let Value::Scalar {
            text,
            kind: Kind::Int,
        } = &self.node.value
        else {
            return Err(self.expected("an integer"));
        };
        parse_int(text)
            .flatten()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                self.expected(&format!(
                    "an integer from {} to {}",
                    range.start(),
                    range.end()
                ))
            })
    }
}

/// The entries of a mapping whose keys were checked against a fixed list.
pub struct Fields<'a> {
    /// The mapping itself, for errors about the whole of it.
    pub at: At<'a>,
    entries: Vec<(&'a str, At<'a>)>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, key: &str) -> Option<&At<'a>> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, at)| at)
    }

    /// Reads `key` with `read`, if it is there.
    pub fn read<T>(
        &self,
        key: &str,
        read: impl FnOnce(&At<'a>) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        self.get(key).map(read).transpose()
    }

    pub fn int(&self, key: &str, range: RangeInclusive<u32>) -> Result<Option<u32>, Error> {
        self.read(key, |at| at.int(range))
    }
}
