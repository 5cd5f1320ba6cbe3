//! The words of a command line after its name: positionals, switches and
//! options, and the validators that turn words into typed fields. Pure.

use std::collections::BTreeMap;

use super::ParseError;
use super::specs::spec;
use crate::validate;

/// The words after the command name, split into positionals and flags.
pub(super) struct Args<'a> {
    pub command: &'static str,
    pub positionals: Vec<&'a str>,
    pub flags: Vec<&'a str>,
    pub options: BTreeMap<&'a str, &'a str>,
    /// Every occurrence of every option, in order (for repeatable ones).
    pub all: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    /// Split `words`; `flags` are switches, `options` take a value.
    pub(super) fn split(
        command: &'static str,
        words: &'a [String],
        flags: &[&str],
        options: &[&str],
    ) -> Result<Args<'a>, ParseError> {
        let mut args = Args {
            command,
            positionals: Vec::new(),
            flags: Vec::new(),
            options: BTreeMap::new(),
            all: Vec::new(),
        };
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let w = w.as_str();
            if w.starts_with('-') && w.len() > 1 {
                let (name, inline) = match w.split_once('=') {
                    Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                    _ => (w, None),
                };
                if flags.contains(&name) && inline.is_none() {
                    args.flags.push(name);
                } else if options.contains(&name) {
                    let value = match inline {
                        Some(v) => v,
                        None => it.next().map(String::as_str).ok_or_else(|| {
                            ParseError::usage(format!("{command}: {name} needs a value"))
                        })?,
                    };
                    args.options.insert(name, value);
                    args.all.push((name, value));
                } else {
                    return Err(ParseError::usage(format!(
                        "{command}: unknown option {w}; usage: {}",
                        spec(command).map_or("", |s| s.usage)
                    )));
                }
            } else {
                args.positionals.push(w);
            }
        }
        Ok(args)
    }

    pub(super) fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    pub(super) fn usage_error(&self, what: &str) -> ParseError {
        ParseError::usage(format!(
            "{}: {what}; usage: {}",
            self.command,
            spec(self.command).map_or("", |s| s.usage)
        ))
    }

    /// Exactly `n` positionals.
    pub(super) fn exactly(&self, n: usize) -> Result<&[&'a str], ParseError> {
        match self.positionals.len().cmp(&n) {
            std::cmp::Ordering::Equal => Ok(&self.positionals),
            std::cmp::Ordering::Less => Err(self.usage_error("missing argument")),
            std::cmp::Ordering::Greater => {
                Err(self.usage_error(&format!("unexpected argument {:?}", self.positionals[n])))
            }
        }
    }

    /// At least `n` positionals.
    pub(super) fn at_least(&self, n: usize) -> Result<&[&'a str], ParseError> {
        if self.positionals.len() < n {
            Err(self.usage_error("missing argument"))
        } else {
            Ok(&self.positionals)
        }
    }
}

pub(super) fn app(s: &str) -> Result<validate::AppName, ParseError> {
    validate::app_name(s).map_err(|e| ParseError::usage(e.to_string()))
}

pub(super) fn node(s: &str) -> Result<String, ParseError> {
    validate::process_name("node name", s).map_err(|e| ParseError::usage(e.to_string()))?;
    Ok(s.to_string())
}

pub(super) fn env_key(s: &str) -> Result<validate::EnvKey, ParseError> {
    validate::env_key(s).map_err(|e| ParseError::usage(e.to_string()))
}

pub(super) fn server_name(s: &str) -> Result<String, ParseError> {
    validate::key_name(s)
        .map_err(|e| ParseError::usage(e.to_string().replace("key name", "server name")))?;
    Ok(s.to_string())
}

pub(super) fn domain(s: &str) -> Result<validate::Domain, ParseError> {
    validate::domain(s).map_err(|e| ParseError::usage(e.to_string()))
}

pub(super) fn release(s: &str) -> Result<u32, ParseError> {
    validate::release_id(s).map_err(|e| ParseError::usage(e.to_string()))
}

/// A read command of the whole instance: no arguments, only `--json`.
pub(super) fn json_only(command: &'static str, words: &[String]) -> Result<bool, ParseError> {
    let a = Args::split(command, words, &["--json"], &[])?;
    a.exactly(0)?;
    Ok(a.flag("--json"))
}

/// `COMMAND APP [--json]`.
pub(super) fn app_json(
    command: &'static str,
    words: &[String],
) -> Result<(validate::AppName, bool), ParseError> {
    let a = Args::split(command, words, &["--json"], &[])?;
    Ok((app(a.exactly(1)?[0])?, a.flag("--json")))
}

/// `COMMAND APP`.
pub(super) fn app_only(
    command: &'static str,
    words: &[String],
) -> Result<validate::AppName, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    app(a.exactly(1)?[0])
}

/// `COMMAND APP NAME…` where each NAME is checked by `each`.
pub(super) fn app_and_many<T>(
    command: &'static str,
    words: &[String],
    each: impl Fn(&str) -> Result<T, ParseError>,
) -> Result<(validate::AppName, Vec<T>), ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    let p = a.at_least(2)?;
    let rest = p[1..].iter().map(|w| each(w)).collect::<Result<_, _>>()?;
    Ok((app(p[0])?, rest))
}

/// `COMMAND SERVER`.
pub(super) fn server_only(command: &'static str, words: &[String]) -> Result<String, ParseError> {
    let a = Args::split(command, words, &[], &[])?;
    server_name(a.exactly(1)?[0])
}

/// `COMMAND [ONE]`: at most one positional.
pub(super) fn optional_one<'w>(a: &Args<'w>) -> Result<Option<&'w str>, ParseError> {
    match a.positionals.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(a.usage_error("too many arguments")),
    }
}

/// `COMMAND APP [ONE]`: one positional, then at most one more.
pub(super) fn app_and_optional<'w>(
    a: &Args<'w>,
) -> Result<(validate::AppName, Option<&'w str>), ParseError> {
    let p = a.at_least(1)?;
    if p.len() > 2 {
        return Err(a.usage_error("too many arguments"));
    }
    Ok((app(p[0])?, p.get(1).copied()))
}
