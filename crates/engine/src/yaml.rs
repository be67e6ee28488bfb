//! YAML with locations: the workflow file becomes a JSON value plus an index from key paths
//! (`nodes.rl.params.lr`, `nodes.rl.matrix.lr[0]`) to source spans.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

/// A place in the workflow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// Byte offset of the start.
    pub offset: usize,
    /// Length in bytes (at least 1 when known).
    pub len: usize,
}

fn span_of(loc: serde_saphyr::Location) -> Span {
    let s = loc.span();
    Span {
        line: loc.line(),
        column: loc.column(),
        offset: s.byte_offset().unwrap_or(0) as usize,
        len: s.byte_len().unwrap_or(0) as usize,
    }
}

/// Fill in the byte offset of a span known only by line and column.
fn with_offset(mut span: Span, text: &str) -> Span {
    if span.offset == 0 && (span.line > 1 || span.column > 1) {
        let line_start: usize = text
            .split_inclusive('\n')
            .take(span.line.saturating_sub(1) as usize)
            .map(str::len)
            .sum();
        let line = text[line_start.min(text.len())..]
            .lines()
            .next()
            .unwrap_or("");
        let col: usize = line
            .chars()
            .take(span.column.saturating_sub(1) as usize)
            .map(char::len_utf8)
            .sum();
        span.offset = (line_start + col).min(text.len().saturating_sub(1));
    }
    span.len = span.len.max(1);
    span
}

/// Where the key and the value at one path are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place {
    /// The key's span (absent for the document root and sequence items).
    pub key: Option<Span>,
    /// The value's span.
    pub value: Span,
}

/// Spans of every key path of a document.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    places: HashMap<String, Place>,
    /// Keys that appear twice in one mapping: (path of the second, span of the first).
    pub duplicates: Vec<(String, Span, Span)>,
}

impl SpanIndex {
    /// The place of `path`, or of its nearest ancestor that has one.
    pub fn nearest<'a>(&self, path: &'a str) -> Option<(&'a str, Place)> {
        let mut p = path;
        loop {
            if let Some(place) = self.places.get(p) {
                return Some((p, *place));
            }
            p = parent(p)?;
        }
    }
    /// The place of exactly `path`.
    pub fn get(&self, path: &str) -> Option<Place> {
        self.places.get(path).copied()
    }
}

/// The parent of a key path (`a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``).
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Join a map key onto a path.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A located YAML node.
enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

/// A mapping key, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::I64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::U64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::F64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Spanned<Key>>()? {
                    let v = map.next_value::<Spanned<Node>>()?;
                    entries.push((k, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML syntax error, or a file beyond the reader's limits.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where, when known.
    pub span: Option<Span>,
    /// The file breaks one of [`limits`] rather than YAML's grammar.
    pub limit: bool,
}

/// What one workflow file may hold. A 15,900-node workflow broke the parser's default limit
/// of 250,000 YAML nodes (about 16 per workflow node); the engine scales linearly well past
/// that, so the limits sit far above any workflow it has run while still bounding a file
/// made to exhaust memory.
pub fn limits() -> Budget {
    let mut b = Budget::default();
    b.max_nodes = 20_000_000;
    b.max_events = 50_000_000;
    b.max_total_scalar_bytes = 1 << 30;
    b
}

/// Parse `text` into a JSON value and its span index.
pub fn parse(text: &str) -> Result<(Value, SpanIndex), SyntaxError> {
    parse_within(text, limits())
}

fn parse_within(text: &str, budget: Budget) -> Result<(Value, SpanIndex), SyntaxError> {
    let mut options = Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    options.strict_booleans = true;
    options.budget = Some(budget.clone());
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let span = e.location().map(|l| with_offset(span_of(l), text));
            match &e {
                serde_saphyr::Error::Budget { breach, .. } => SyntaxError {
                    message: format!(
                        "the file is larger than scorch reads ({breach:?}; the limits are {} YAML nodes and {} parser events)",
                        budget.max_nodes, budget.max_events
                    ),
                    span,
                    limit: true,
                },
                _ => SyntaxError {
                    message: e.to_string(),
                    span,
                    limit: false,
                },
            }
        })?;
    let mut index = SpanIndex::default();
    let value = convert(root, String::new(), None, &mut index, text)?;
    Ok((value, index))
}

fn convert(
    node: Spanned<Node>,
    path: String,
    key: Option<Span>,
    index: &mut SpanIndex,
    text: &str,
) -> Result<Value, SyntaxError> {
    let mut span = span_of(node.referenced);
    if span.len == 0 {
        // Scalars without a byte length: cover the rest of the token.
        let rest = text.get(span.offset..).unwrap_or("");
        span.len = rest.find(['\n', '#']).unwrap_or(rest.len()).max(1);
        span.len = rest[..span.len.min(rest.len())].trim_end().len().max(1);
    }
    index
        .places
        .insert(path.clone(), Place { key, value: span });
    Ok(match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::I64(i) => Value::from(i),
        Node::U64(u) => Value::from(u),
        Node::F64(f) => match serde_json::Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => {
                return Err(SyntaxError {
                    message: format!("`{f}` is not a finite number"),
                    span: Some(span),
                    limit: false,
                });
            }
        },
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(convert(item, format!("{path}[{i}]"), None, index, text)?);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = serde_json::Map::new();
            let mut first_seen: HashMap<String, Span> = HashMap::new();
            for (k, v) in entries {
                let kspan = span_of(k.referenced);
                let kspan = Span {
                    len: kspan.len.max(k.value.0.len()),
                    ..kspan
                };
                let child = join(&path, &k.value.0);
                if let Some(first) = first_seen.get(&k.value.0) {
                    index.duplicates.push((child.clone(), kspan, *first));
                    continue;
                }
                first_seen.insert(k.value.0.clone(), kspan);
                let value = convert(v, child, Some(kspan), index, text)?;
                out.insert(k.value.0, value);
            }
            Value::Object(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\nnodes:\n  a:\n    kind: numbers\n    params: {n: 3, xs: [1, 2.5]}\n  b:\n    kind: total\n";

    #[test]
    fn a_file_past_the_limits_says_so_plainly() {
        let mut tight = Budget::default();
        tight.max_nodes = 10;
        let e = parse_within(DOC, tight).unwrap_err();
        assert!(e.limit);
        assert!(
            e.message
                .starts_with("the file is larger than scorch reads"),
            "{}",
            e.message
        );
        assert!(e.message.contains("10 YAML nodes"), "{}", e.message);
        // A plain syntax error is not a limit.
        let e = parse("nodes: [a, b").unwrap_err();
        assert!(!e.limit);
    }

    #[test]
    fn a_workflow_of_30000_nodes_is_within_the_limits() {
        let mut text = String::from("name: big\nnodes:\n");
        for i in 0..30_000 {
            text.push_str(&format!(
                "  n{i}:\n    kind: affine\n    params: {{scale: 2, offset: {i}}}\n    inputs: {{table: {{from: n{}.table}}}}\n",
                i / 2
            ));
        }
        let (v, _) = parse(&text).unwrap();
        assert_eq!(v["nodes"].as_object().unwrap().len(), 30_000);
        // The parser's own default stops short of it.
        assert!(parse_within(&text, Budget::default()).unwrap_err().limit);
    }

    #[test]
    fn values_and_places() {
        let (v, idx) = parse(DOC).unwrap();
        assert_eq!(v["nodes"]["a"]["params"]["xs"][1], serde_json::json!(2.5));
        let kind = idx.get("nodes.b.kind").unwrap();
        assert_eq!((kind.value.line, kind.value.column), (7, 11));
        assert_eq!(
            &DOC[kind.value.offset..kind.value.offset + kind.value.len],
            "total"
        );
        let key = kind.key.unwrap();
        assert_eq!(&DOC[key.offset..key.offset + key.len], "kind");
        let x = idx.get("nodes.a.params.xs[1]").unwrap();
        assert_eq!(&DOC[x.value.offset..x.value.offset + x.value.len], "2.5");
        let (p, _) = idx.nearest("nodes.a.params.missing.deeper").unwrap();
        assert_eq!(p, "nodes.a.params");
    }

    #[test]
    fn duplicate_keys_are_recorded() {
        let (_, idx) = parse("nodes:\n  a: {kind: x}\n  a: {kind: y}\n").unwrap();
        assert_eq!(idx.duplicates.len(), 1);
        assert_eq!(idx.duplicates[0].0, "nodes.a");
        assert_eq!(idx.duplicates[0].1.line, 3);
        assert_eq!(idx.duplicates[0].2.line, 2);
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let err = parse("nodes:\n  a: [1, 2\n  b: 3\n").unwrap_err();
        assert!(err.span.is_some(), "{err:?}");
    }

    #[test]
    fn parents() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}
