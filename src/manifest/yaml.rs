//! The YAML layer of the manifest: text → a small tree that remembers the
//! line of every node and key, and a cursor ([`At`]) that reads the tree
//! while carrying the key path, so every error can say `file:line: path: reason`.
//!
//! Serde's derived errors know neither the key path nor our wording, so the
//! tree is built from the parser's events (serde-saphyr re-exports its parser)
//! and the manifest is read from it by hand. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span, StrInput};

use super::ManifestError;

/// Deeper nesting than this is no manifest; the limit keeps recursion bounded.
const MAX_DEPTH: usize = 32;
/// Nodes after alias expansion; stops "billion laughs" documents.
const MAX_NODES: usize = 100_000;
/// Bytes the tree may take after alias expansion, per byte of input (plus
/// [`BYTES_FLOOR`]): an alias of a long scalar costs its length each time,
/// so a small file cannot make a big tree.
const BYTES_PER_INPUT_BYTE: usize = 10;
const BYTES_FLOOR: usize = 64 * 1024;
/// What one node costs besides its text (about its size in memory).
const NODE_BYTES: usize = 48;

/// One YAML node and the line it starts on (1-based).
#[derive(Debug, Clone)]
pub(super) struct Yaml {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(super) enum Value {
    /// The text as written (after quoting and escapes) and what YAML 1.2 reads it as.
    Scalar {
        text: String,
        kind: Kind,
    },
    List(Vec<Yaml>),
    Map(Vec<Entry>),
}

/// What a scalar resolves to under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

/// A mapping entry; keys are scalars, kept as their text.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub key: String,
    /// The line of the key: where a user looks for `key: value`.
    pub line: usize,
    pub value: Yaml,
}

/// Parses one YAML document; `None` for a stream with no document (empty or only comments).
pub(super) fn parse(text: &str) -> Result<Option<Yaml>, ManifestError> {
    Builder {
        events: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        bytes: 0,
        budget: text.len().saturating_mul(BYTES_PER_INPUT_BYTE) + BYTES_FLOOR,
        input: text.len(),
    }
    .stream()
}

struct Builder<'i> {
    events: Parser<'i, StrInput<'i>>,
    anchors: HashMap<usize, Yaml>,
    nodes: usize,
    /// Bytes of the tree so far (see [`weight`]), against `budget`.
    bytes: usize,
    budget: usize,
    /// Bytes of the text parsed, for the budget's message.
    input: usize,
}

fn invalid(line: Option<usize>, reason: &str) -> ManifestError {
    ManifestError::new(line, "", format!("invalid YAML: {reason}"))
}

fn scan_error(e: &ScanError) -> ManifestError {
    invalid(Some(e.marker().line()), &e.info())
}

/// A path segment is shown bare when it is a plain word, quoted otherwise.
pub(super) fn child_path(path: &str, key: &str) -> String {
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

impl<'i> Builder<'i> {
    /// The next event that matters for the tree (comments and other metadata are skipped).
    fn next(&mut self) -> Result<(Event<'i>, Span), ManifestError> {
        loop {
            match self.events.next() {
                None => return Err(invalid(None, "unexpected end of input")),
                Some(Err(e)) => return Err(scan_error(&e)),
                Some(Ok((event, span))) => match event {
                    Event::StreamStart
                    | Event::StreamEnd
                    | Event::DocumentStart(..)
                    | Event::DocumentEnd
                    | Event::SequenceEnd
                    | Event::MappingEnd => return Ok((event, span)),
                    _ if event.is_node() => return Ok((event, span)),
                    _ => continue,
                },
            }
        }
    }

    fn stream(&mut self) -> Result<Option<Yaml>, ManifestError> {
        let (event, span) = self.next()?;
        if !matches!(event, Event::StreamStart) {
            return Err(invalid(
                Some(span.start.line()),
                "expected the start of the stream",
            ));
        }
        let root = match self.next()? {
            (Event::StreamEnd, _) => return Ok(None),
            (Event::DocumentStart(..), _) => {
                let (event, span) = self.next()?;
                let root = self.node(event, span, "", 0)?;
                match self.next()? {
                    (Event::DocumentEnd, _) => root,
                    (_, span) => {
                        return Err(invalid(
                            Some(span.start.line()),
                            "expected the end of the document",
                        ));
                    }
                }
            }
            (_, span) => return Err(invalid(Some(span.start.line()), "expected a document")),
        };
        match self.next()? {
            (Event::StreamEnd, _) => Ok(Some(root)),
            (_, span) => Err(invalid(
                Some(span.start.line()),
                "a second document (---) is not allowed here",
            )),
        }
    }

    fn count(&mut self, n: usize, bytes: usize, line: usize) -> Result<(), ManifestError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(invalid(
                Some(line),
                &format!("more than {MAX_NODES} nodes (after expanding aliases)"),
            ));
        }
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.budget {
            return Err(invalid(
                Some(line),
                &format!(
                    "aliases expand to more than {} KB (the limit for a {} KB file)",
                    self.budget / 1024,
                    self.input.div_ceil(1024)
                ),
            ));
        }
        Ok(())
    }

    fn node(
        &mut self,
        event: Event<'i>,
        span: Span,
        path: &str,
        depth: usize,
    ) -> Result<Yaml, ManifestError> {
        let line = span.start.line();
        if depth > MAX_DEPTH {
            return Err(invalid(
                Some(line),
                &format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let unsupported_tag = |tag: &str| {
            ManifestError::new(
                Some(line),
                path,
                format!("the tag {tag} is not supported (only !!str is)"),
            )
        };
        let (anchor, value) = match event {
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    return Err(invalid(Some(line), "alias to an unknown anchor"));
                };
                // Counted before the copy is made: the budget bounds memory.
                let (n, bytes) = (size(target), weight(target));
                self.count(n, bytes, line)?;
                let mut copy = self.anchors[&id].clone();
                copy.line = line;
                return Ok(copy);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let kind = match tag {
                    Some(tag) if tag.is_yaml_core_schema_tag("str") => Kind::Str,
                    Some(tag) => return Err(unsupported_tag(&tag.original())),
                    None if style == ScalarStyle::Plain => resolve(&text),
                    None => Kind::Str,
                };
                let text = text.into_owned();
                (anchor, Value::Scalar { text, kind })
            }
            Event::SequenceStart(_, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(unsupported_tag(&tag.original()));
                }
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    let item_path = format!("{path}[{}]", items.len());
                    items.push(self.node(event, span, &item_path, depth + 1)?);
                }
                (anchor, Value::List(items))
            }
            Event::MappingStart(_, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(unsupported_tag(&tag.original()));
                }
                (anchor, Value::Map(self.entries(path, depth)?))
            }
            _ => return Err(invalid(Some(line), "expected a value")),
        };
        let node = Yaml { line, value };
        let own = NODE_BYTES
            + match &node.value {
                Value::Scalar { text, .. } => text.len(),
                Value::List(_) => 0,
                Value::Map(entries) => entries.iter().map(|e| e.key.len()).sum(),
            };
        self.count(1, own, line)?;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// The entries of a mapping, up to its end; duplicate keys are refused here.
    fn entries(&mut self, path: &str, depth: usize) -> Result<Vec<Entry>, ManifestError> {
        let mut entries = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                return Ok(entries);
            }
            let key = self.node(event, span, path, depth + 1)?;
            let Value::Scalar { text: key_text, .. } = key.value else {
                return Err(ManifestError::new(
                    Some(key.line),
                    path,
                    format!("expected a string key, found {}", describe(&key)),
                ));
            };
            let key_path = child_path(path, &key_text);
            if let Some(first) = seen.insert(key_text.clone(), key.line) {
                return Err(ManifestError::new(
                    Some(key.line),
                    &key_path,
                    format!("duplicate key (first on line {first})"),
                ));
            }
            let (event, span) = self.next()?;
            let value = self.node(event, span, &key_path, depth + 1)?;
            entries.push(Entry {
                key: key_text,
                line: key.line,
                value,
            });
        }
    }
}

fn size(node: &Yaml) -> usize {
    1 + match &node.value {
        Value::Scalar { .. } => 0,
        Value::List(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|e| size(&e.value)).sum(),
    }
}

/// Bytes of a tree: [`NODE_BYTES`] per node, plus its scalars and keys.
fn weight(node: &Yaml) -> usize {
    NODE_BYTES
        + match &node.value {
            Value::Scalar { text, .. } => text.len(),
            Value::List(items) => items.iter().map(weight).sum(),
            Value::Map(entries) => entries.iter().map(|e| e.key.len() + weight(&e.value)).sum(),
        }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return Kind::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Kind::Float,
        _ => {}
    }
    if parse_int(text).is_some() {
        Kind::Int
    } else if is_float(text) {
        Kind::Float
    } else {
        Kind::Str
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let text = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (text, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

/// A core-schema integer (`12`, `-3`, `0x1f`, `0o17`); `None` if it is not one.
/// Values beyond `i128` still count as integers, reported as out of range.
fn parse_int(text: &str) -> Option<Option<i128>> {
    let (radix, digits) = if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (8, oct)
    } else {
        (10, text.strip_prefix(['-', '+']).unwrap_or(text))
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value = i128::from_str_radix(digits, radix).ok();
    Some(if text.starts_with('-') {
        value.map(|v| -v)
    } else {
        value
    })
}

/// How a value is named in "expected …, found …".
pub(super) fn describe(node: &Yaml) -> String {
    match &node.value {
        Value::Scalar {
            kind: Kind::Null, ..
        } => "null".to_owned(),
        Value::Scalar {
            kind: Kind::Str,
            text,
        } => format!("{text:?}"),
        Value::Scalar { text, .. } => text.clone(),
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a mapping".to_owned(),
    }
}

/// A node being read, with its key path and the line errors point at (the
/// key's line for a mapping entry, the node's own line otherwise).
#[derive(Debug, Clone)]
pub(super) struct At<'a> {
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

    pub fn fail(&self, reason: impl Into<String>) -> ManifestError {
        ManifestError::new(Some(self.line), &self.path, reason)
    }

    pub fn expected(&self, what: &str) -> ManifestError {
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
    pub fn entries(&self) -> Result<Vec<(&'a str, At<'a>)>, ManifestError> {
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
            _ if self.is_null() => Ok(Vec::new()),
            _ => Err(self.expected("a mapping")),
        }
    }

    /// A mapping with a fixed set of keys; any other key is an error.
    pub fn fields(&self, known: &[&str]) -> Result<Fields<'a>, ManifestError> {
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
    pub fn items(&self) -> Result<Vec<At<'a>>, ManifestError> {
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
            _ if self.is_null() => Ok(Vec::new()),
            _ => Err(self.expected("a list")),
        }
    }

    /// A string, and only a string.
    pub fn string(&self) -> Result<&'a str, ManifestError> {
        match &self.node.value {
            Value::Scalar {
                text,
                kind: Kind::Str,
            } => Ok(text),
            _ => Err(self.expected("a string")),
        }
    }

    /// A scalar read as text: strings, and numbers or booleans as written (`PORT: 80`).
    pub fn text(&self) -> Result<&'a str, ManifestError> {
        match &self.node.value {
            Value::Scalar { text, kind } if *kind != Kind::Null => Ok(text),
            _ => Err(self.expected("a string")),
        }
    }

    pub fn bool(&self) -> Result<bool, ManifestError> {
        match &self.node.value {
            Value::Scalar {
                text,
                kind: Kind::Bool,
            } => Ok(text.eq_ignore_ascii_case("true")),
            _ => Err(self.expected("true or false")),
        }
    }

    pub fn int(&self, range: RangeInclusive<u32>) -> Result<u32, ManifestError> {
        let Value::Scalar {
            text,
            kind: Kind::Int,
        } = &self.node.value
        else {
            return Err(self.expected("an integer"));
        };
        parse_int(text)
            .flatten()
            .and_then(|v| u32::try_from(v).ok())
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
pub(super) struct Fields<'a> {
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
        read: impl FnOnce(&At<'a>) -> Result<T, ManifestError>,
    ) -> Result<Option<T>, ManifestError> {
        self.get(key).map(read).transpose()
    }

    pub fn int(&self, key: &str, range: RangeInclusive<u32>) -> Result<Option<u32>, ManifestError> {
        self.read(key, |at| at.int(range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        for (text, kind) in [
            ("", Kind::Null),
            ("~", Kind::Null),
            ("true", Kind::Bool),
            ("yes", Kind::Str),
            ("80", Kind::Int),
            ("-3", Kind::Int),
            ("0x1F", Kind::Int),
            ("0o17", Kind::Int),
            ("1.5", Kind::Float),
            ("1e3", Kind::Float),
            (".5", Kind::Float),
            ("1.", Kind::Float),
            (".inf", Kind::Float),
            (".", Kind::Str),
            ("1e", Kind::Str),
            ("1.2.3", Kind::Str),
            ("redis:7", Kind::Str),
            ("0x", Kind::Str),
        ] {
            assert_eq!(resolve(text), kind, "{text:?}");
        }
    }

    #[test]
    fn lines_and_anchors() {
        let doc = parse("a: &x\n  b: 1\nc: *x\n").unwrap().unwrap();
        let Value::Map(entries) = &doc.value else {
            panic!()
        };
        assert_eq!(entries[1].key, "c");
        assert_eq!(entries[1].line, 3);
        assert!(matches!(&entries[1].value.value, Value::Map(m) if m[0].key == "b"));
    }

    #[test]
    fn alias_bombs_stop() {
        // Nine levels of ten aliases each: 10^9 nodes if expanded.
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            text += &format!("l{i}: &l{i} [{refs}]\n");
        }
        let e = parse(&text).unwrap_err();
        assert!(e.reason.contains("aliases expand to more than"), "{e}");
    }

    #[test]
    fn an_alias_bomb_of_long_scalars_is_stopped_by_bytes_not_nodes() {
        // 40 KB scalar, aliased 2,000 times: few nodes, 80 MB if expanded.
        let mut text = format!("a: &a \"{}\"\nb: [", "x".repeat(40_000));
        text += &vec!["*a"; 2_000].join(", ");
        text += "]\n";
        let started = std::time::Instant::now();
        let e = parse(&text).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(e.to_string().lines().count(), 1, "one line: {e}");
        assert!(
            e.reason
                == "invalid YAML: aliases expand to more than 532 KB (the limit for a 47 KB file)",
            "{e}"
        );
    }

    #[test]
    fn deep_nesting_stops() {
        let text = "[".repeat(10_000);
        assert!(parse(&text).is_err());
    }
}
