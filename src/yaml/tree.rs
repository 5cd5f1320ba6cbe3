//! The YAML tree: the parser's events built into [`Yaml`] nodes that keep
//! their line, with anchors expanded under a node and byte budget and the
//! nesting depth bounded. Refuses duplicate keys, tags other than `!!str`
//! and more than one document. Pure: touches nothing but the text it is given.

use std::collections::{BTreeMap, HashMap};

use granit_parser::{Event, Parser, ScalarStyle, ScanError, Span, StrInput};

use super::scalar::{describe, resolve};
use super::{Error, child_path};

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
pub struct Yaml {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
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
pub enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

/// A mapping entry; keys are scalars, kept as their text.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    /// The line of the key: where a user looks for `key: value`.
    pub line: usize,
    pub value: Yaml,
}

/// Parses one YAML document; `None` for a stream with no document (empty or only comments).
pub fn parse(text: &str) -> Result<Option<Yaml>, Error> {
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

fn invalid(line: Option<usize>, reason: &str) -> Error {
    Error::new(line, "", format!("invalid YAML: {reason}"))
}

fn scan_error(e: &ScanError) -> Error {
    invalid(Some(e.marker().line()), &e.info())
}

impl<'i> Builder<'i> {
    /// The next event that matters for the tree (comments and other metadata are skipped).
    fn next(&mut self) -> Result<(Event<'i>, Span), Error> {
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

    fn stream(&mut self) -> Result<Option<Yaml>, Error> {
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

    fn count(&mut self, n: usize, bytes: usize, line: usize) -> Result<(), Error> {
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
    ) -> Result<Yaml, Error> {
        let line = span.start.line();
        if depth > MAX_DEPTH {
            return Err(invalid(
                Some(line),
                &format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let unsupported_tag = |tag: &str| {
            Error::new(
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
    fn entries(&mut self, path: &str, depth: usize) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                return Ok(entries);
            }
            let key = self.node(event, span, path, depth + 1)?;
            let Value::Scalar { text: key_text, .. } = key.value else {
                return Err(Error::new(
                    Some(key.line),
                    path,
                    format!("expected a string key, found {}", describe(&key)),
                ));
            };
            let key_path = child_path(path, &key_text);
            if let Some(first) = seen.insert(key_text.clone(), key.line) {
                return Err(Error::new(
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

#[cfg(test)]
mod tests {
    use super::*;

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
