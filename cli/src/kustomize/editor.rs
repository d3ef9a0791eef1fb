//! A byte-preserving editor for the `images:` list of a kustomization.
//!
//! The file is parsed with `saphyr-parser`, which reports the source span of
//! every scalar and collection. Edits are then splices of the original text:
//! replacing a scalar's span, removing a key's lines, or inserting new lines
//! beside their siblings. Everything outside those splices (comments, blank
//! lines, quoting, key order, document markers, CRLF) is untouched, so
//! changing one tag is a one-line diff.

use std::iter::Peekable;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, StrInput};

use crate::kustomize::image_ref::{ImageEntry, ImageSpec};

/// A problem with a kustomization file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct EditError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// One `images:` entry that a bump changed (or created, when `before` is None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    pub before: Option<ImageEntry>,
    pub after: ImageEntry,
}

/// What to do with a spec whose image has no entry in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Add the entry (and the `images:` list if needed), as kustomize does.
    Create,
    /// Leave the file alone: used with `--dir`, where only files that already
    /// reference the image are bumped.
    Skip,
}

/// Applies `specs` in order and returns the new text with what changed.
/// The result is re-parsed and checked before it is returned, so a caller
/// never writes a file this editor broke.
pub fn set_images(
    src: &str,
    specs: &[ImageSpec],
    missing: Missing,
) -> Result<(String, Vec<ImageChange>), EditError> {
    let mut text = src.to_string();
    let mut changes = Vec::new();
    for spec in specs {
        let doc = Document::parse(&text)?;
        let entries = doc.images()?;
        let existing = entries.iter().find(|(e, _)| e.name == spec.name);
        if existing.is_none() && missing == Missing::Skip {
            continue;
        }
        let before = existing.map(|(e, _)| e.clone());
        let after = spec.apply(before.as_ref());
        if before.as_ref() == Some(&after) {
            continue;
        }
        let splices = match existing {
            Some((old, node)) => doc.update_entry(node, old, &after)?,
            None => doc.add_entry(&after)?,
        };
        text = apply_splices(&text, splices);
        changes.push(ImageChange { before, after });
    }
    if !changes.is_empty() {
        verify(&text, &changes)?;
    }
    Ok((text, changes))
}

/// The `images:` entries of a kustomization, in file order.
pub fn read_images(src: &str) -> Result<Vec<ImageEntry>, EditError> {
    let doc = Document::parse(src)?;
    Ok(doc.images()?.into_iter().map(|(e, _)| e).collect())
}

fn verify(text: &str, changes: &[ImageChange]) -> Result<(), EditError> {
    let entries = read_images(text).map_err(|e| EditError {
        message: format!(
            "internal error: the edited file does not parse: {}",
            e.message
        ),
        ..e
    })?;
    for change in changes {
        let found = entries
            .iter()
            .filter(|e| e.name == change.after.name)
            .collect::<Vec<_>>();
        if found.len() != 1 || *found[0] != change.after {
            return Err(EditError {
                line: 1,
                col: 1,
                message: format!(
                    "internal error: after editing, image {} reads back as {found:?}",
                    change.after.name
                ),
            });
        }
    }
    Ok(())
}

/// A replacement of `src[start..end]`.
#[derive(Debug)]
struct Splice {
    start: usize,
    end: usize,
    text: String,
}

fn apply_splices(src: &str, mut splices: Vec<Splice>) -> String {
    splices.sort_by_key(|s| std::cmp::Reverse((s.start, s.end)));
    let mut out = src.to_string();
    for s in splices {
        out.replace_range(s.start..s.end, &s.text);
    }
    out
}

// ---------------------------------------------------------------------------
// The parsed tree, with byte spans.

#[derive(Debug)]
enum Value {
    Scalar {
        text: String,
        style: ScalarStyle,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Map {
        pairs: Vec<(Node, Node)>,
        flow: bool,
    },
    Alias,
}

#[derive(Debug)]
struct Node {
    value: Value,
    /// Byte offsets. Quoted scalars include their quotes; flow collections
    /// include their brackets; block collections end where their last child does.
    start: usize,
    end: usize,
    /// 1-based line, 0-based column (in characters).
    line: usize,
    col: usize,
}

impl Node {
    fn err(&self, message: impl Into<String>) -> EditError {
        EditError {
            line: self.line,
            col: self.col + 1,
            message: message.into(),
        }
    }

    fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, style: ScalarStyle::Plain }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    fn get<'a>(pairs: &'a [(Node, Node)], key: &str) -> Option<&'a (Node, Node)> {
        pairs.iter().find(|(k, _)| k.scalar() == Some(key))
    }
}

struct Document<'s> {
    src: &'s str,
    root: Node,
    newline: &'static str,
}

/// Converts the parser's character indices to byte offsets.
struct Offsets(Option<Vec<usize>>);

impl Offsets {
    fn new(src: &str) -> Self {
        if src.is_ascii() {
            return Offsets(None);
        }
        let mut v: Vec<usize> = src.char_indices().map(|(b, _)| b).collect();
        v.push(src.len());
        Offsets(Some(v))
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.0 {
            None => char_index,
            Some(v) => v[char_index.min(v.len() - 1)],
        }
    }
}

fn scan_error(e: ScanError) -> EditError {
    EditError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: format!("invalid YAML: {}", e.info()),
    }
}

struct Builder<'s> {
    src: &'s str,
    events: Peekable<Parser<'s, StrInput<'s>>>,
    offsets: Offsets,
}

/// The offset just past the quote that closes the quoted scalar at `start`.
fn closing_quote(src: &str, start: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let quote = *bytes.get(start).filter(|b| matches!(b, b'"' | b'\''))?;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

impl<'s> Builder<'s> {
    fn next(&mut self) -> Result<(Event<'s>, Span), EditError> {
        match self.events.next() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(scan_error(e)),
            None => Err(EditError {
                line: 1,
                col: 1,
                message: "invalid YAML: unexpected end of input".into(),
            }),
        }
    }

    fn node_at(&self, span: &Span, value: Value, end: usize) -> Node {
        Node {
            value,
            start: self.offsets.byte(span.start.index()),
            end,
            line: span.start.line(),
            col: span.start.col(),
        }
    }

    /// Reads one node whose first event is `ev`.
    fn node(&mut self, ev: Event<'s>, span: Span) -> Result<Node, EditError> {
        let span_end = self.offsets.byte(span.end.index());
        let value = match ev {
            Event::Scalar(text, style, _, _) => {
                let start = self.offsets.byte(span.start.index());
                // saphyr-parser 0.3 stretches a quoted scalar's span over any
                // trailing comment, so find the closing quote ourselves.
                let end = match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        closing_quote(self.src, start)
                    }
                    _ => None,
                };
                let value = Value::Scalar {
                    text: text.into_owned(),
                    style,
                };
                return Ok(self.node_at(&span, value, end.unwrap_or(span_end)));
            }
            Event::Alias(_) => Value::Alias,
            Event::SequenceStart(..) => {
                let flow = !span.is_empty();
                let mut items = Vec::new();
                let end = loop {
                    match self.next()? {
                        (Event::SequenceEnd, s) => break self.offsets.byte(s.end.index()),
                        (ev, s) => items.push(self.node(ev, s)?),
                    }
                };
                let end = if flow {
                    end
                } else {
                    items.last().map_or(span_end, |n: &Node| n.end)
                };
                return Ok(self.node_at(&span, Value::Seq { items, flow }, end));
            }
            Event::MappingStart(..) => {
                let flow = !span.is_empty();
                let mut pairs = Vec::new();
                let end = loop {
                    match self.next()? {
                        (Event::MappingEnd, s) => break self.offsets.byte(s.end.index()),
                        (ev, s) => {
                            let key = self.node(ev, s)?;
                            let (ev, s) = self.next()?;
                            pairs.push((key, self.node(ev, s)?));
                        }
                    }
                };
                let end = if flow {
                    end
                } else {
                    pairs.last().map_or(span_end, |(_, v): &(Node, Node)| v.end)
                };
                return Ok(self.node_at(&span, Value::Map { pairs, flow }, end));
            }
            other => {
                return Err(EditError {
                    line: span.start.line(),
                    col: span.start.col() + 1,
                    message: format!("invalid YAML: unexpected {other:?}"),
                });
            }
        };
        Ok(self.node_at(&span, value, span_end))
    }
}

const KUSTOMIZATION_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "crds",
    "images",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "replacements",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "generators",
    "transformers",
    "validators",
    "replicas",
    "vars",
    "configurations",
    "openapi",
    "helmCharts",
    "helmGlobals",
    "buildMetadata",
    "sortOptions",
];

impl<'s> Document<'s> {
    /// Parses the first document of `src` (as kustomize reads only that one)
    /// and checks that it is a kustomization. Later documents must parse too.
    fn parse(src: &'s str) -> Result<Self, EditError> {
        let mut b = Builder {
            src,
            events: Parser::new_from_str(src).peekable(),
            offsets: Offsets::new(src),
        };
        let mut root = None;
        loop {
            let (ev, span) = b.next()?;
            match ev {
                Event::StreamEnd => break,
                Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd => {}
                ev => {
                    let node = b.node(ev, span)?;
                    root.get_or_insert(node);
                }
            }
        }
        let root = root.ok_or_else(|| EditError {
            line: 1,
            col: 1,
            message: "the file is empty; expected a Kustomization".into(),
        })?;
        let newline = if src.contains("\r\n") { "\r\n" } else { "\n" };
        let doc = Document { src, root, newline };
        doc.check_is_kustomization()?;
        Ok(doc)
    }

    fn root_pairs(&self) -> &[(Node, Node)] {
        match &self.root.value {
            Value::Map { pairs, .. } => pairs,
            _ => &[],
        }
    }

    fn check_is_kustomization(&self) -> Result<(), EditError> {
        if !matches!(self.root.value, Value::Map { .. }) {
            return Err(self
                .root
                .err("expected a Kustomization (a YAML mapping at the top level)"));
        }
        let pairs = self.root_pairs();
        if let Some((_, kind)) = Node::get(pairs, "kind") {
            let k = kind.scalar().unwrap_or_default();
            if k != "Kustomization" && k != "Component" {
                return Err(kind.err(format!(
                    "kind is {k:?}; expected Kustomization or Component"
                )));
            }
        }
        if let Some((_, api)) = Node::get(pairs, "apiVersion") {
            let a = api.scalar().unwrap_or_default();
            if !a.starts_with("kustomize.config.k8s.io/") {
                return Err(api.err(format!(
                    "apiVersion is {a:?}; expected kustomize.config.k8s.io/v1beta1 (or v1alpha1 for a Component)"
                )));
            }
        }
        let known = pairs.iter().any(|(k, _)| {
            k.scalar()
                .is_some_and(|k| KUSTOMIZATION_FIELDS.contains(&k))
        });
        if !known {
            return Err(self.root.err(
                "not a kustomization: none of its top-level keys is a kustomization field \
                 (resources, images, patches, …)",
            ));
        }
        Ok(())
    }

    /// The images entries with their nodes. Errors name the offending entry.
    fn images(&self) -> Result<Vec<(ImageEntry, &Node)>, EditError> {
        let Some((_, list)) = Node::get(self.root_pairs(), "images") else {
            return Ok(Vec::new());
        };
        if list.is_null() {
            return Ok(Vec::new());
        }
        let Value::Seq { items, .. } = &list.value else {
            return Err(
                list.err("images must be a list of {name, newName, newTag, digest} entries")
            );
        };
        let mut entries: Vec<(ImageEntry, &Node)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Value::Map { pairs, .. } = &item.value else {
                return Err(item.err(format!("images[{i}] must be a mapping with a name")));
            };
            let field = |key: &str| -> Result<Option<String>, EditError> {
                match Node::get(pairs, key) {
                    None => Ok(None),
                    Some((_, v)) if v.is_null() => Ok(None),
                    Some((_, v)) => match &v.value {
                        Value::Scalar { text, .. } if text.is_empty() => Ok(None),
                        Value::Scalar { text, .. } => Ok(Some(text.clone())),
                        _ => Err(v.err(format!("images[{i}].{key} must be a string"))),
                    },
                }
            };
            let name =
                field("name")?.ok_or_else(|| item.err(format!("images[{i}] has no name")))?;
            if entries.iter().any(|(e, _)| e.name == name) {
                return Err(item.err(format!(
                    "images[{i}] repeats the name {name:?}; kustomize keeps only one entry per name, \
                     so remove the duplicate"
                )));
            }
            let entry = ImageEntry {
                name,
                new_name: field("newName")?,
                new_tag: field("newTag")?,
                digest: field("digest")?,
            };
            entries.push((entry, item));
        }
        Ok(entries)
    }

    // -----------------------------------------------------------------------
    // Edits.

    fn update_entry(
        &self,
        node: &Node,
        old: &ImageEntry,
        new: &ImageEntry,
    ) -> Result<Vec<Splice>, EditError> {
        let Value::Map { pairs, flow } = &node.value else {
            unreachable!("images() only returns mappings");
        };
        let mut splices = Vec::new();
        let mut added = Vec::new();
        for (key, before, after) in fields(old, new) {
            if before == after {
                continue;
            }
            let pair = Node::get(pairs, key);
            match (pair, after) {
                (Some((k, v)), Some(value)) => splices.push(self.replace_value(k, v, value)?),
                (Some(pair), None) => splices.push(self.remove_pair(pairs, pair, *flow)),
                (None, Some(value)) => added.push((key, value)),
                (None, None) => {}
            }
        }
        if !added.is_empty() {
            let (_, last_value) = pairs.last().expect("an entry has at least its name");
            let last_key = &pairs.last().unwrap().0;
            let at = self.pair_end(last_key, last_value);
            splices.push(if *flow {
                let text: String = added
                    .iter()
                    .map(|(k, v)| format!(", {k}: {}", plain_or_quoted(v)))
                    .collect();
                Splice {
                    start: at,
                    end: at,
                    text,
                }
            } else {
                let indent = " ".repeat(pairs[0].0.col);
                let lines = added
                    .iter()
                    .map(|(k, v)| format!("{indent}{k}: {}", plain_or_quoted(v)))
                    .collect::<Vec<_>>();
                self.insert_lines_after(at, &lines)
            });
        }
        Ok(splices)
    }

    fn add_entry(&self, entry: &ImageEntry) -> Result<Vec<Splice>, EditError> {
        let root_pairs = self.root_pairs();
        let Some((key, list)) = Node::get(root_pairs, "images") else {
            // No images list: append one after the last top-level key.
            let Value::Map { flow, .. } = &self.root.value else {
                unreachable!()
            };
            let (k, v) = root_pairs
                .last()
                .expect("a kustomization has at least one key");
            let at = self.pair_end(k, v);
            if *flow {
                let text = format!(", images: [{}]", flow_entry(entry));
                return Ok(vec![Splice {
                    start: at,
                    end: at,
                    text,
                }]);
            }
            let indent = " ".repeat(root_pairs[0].0.col);
            let mut lines = vec![format!("{indent}images:")];
            lines.extend(block_entry(
                entry,
                &format!("{indent}- "),
                &format!("{indent}  "),
            ));
            return Ok(vec![self.insert_lines_after(at, &lines)]);
        };
        if list.is_null() {
            // `images:` with no list yet: clear any `~` and start the list on the next line.
            let indent = " ".repeat(key.col);
            let lines = block_entry(entry, &format!("{indent}- "), &format!("{indent}  "));
            let mut splices = vec![self.insert_lines_after(key.end, &lines)];
            if list.end > list.start {
                splices.push(Splice {
                    start: list.start,
                    end: list.end,
                    text: String::new(),
                });
            }
            return Ok(splices);
        }
        let Value::Seq { items, flow } = &list.value else {
            unreachable!("checked by images()")
        };
        // Keep a sorted list sorted (kustomize writes them sorted); otherwise append.
        let names: Vec<&str> = items.iter().map(entry_name).collect();
        let sorted = names.windows(2).all(|w| w[0] <= w[1]);
        let before = if sorted {
            names.iter().position(|n| *n > entry.name.as_str())
        } else {
            None
        };
        if *flow {
            let splice = match (before, items.last()) {
                (Some(i), _) => Splice {
                    start: items[i].start,
                    end: items[i].start,
                    text: format!("{}, ", flow_entry(entry)),
                },
                (None, Some(last)) => Splice {
                    start: last.end,
                    end: last.end,
                    text: format!(", {}", flow_entry(entry)),
                },
                (None, None) => Splice {
                    start: list.start + 1,
                    end: list.start + 1,
                    text: flow_entry(entry),
                },
            };
            return Ok(vec![splice]);
        }
        // Lay the new entry out like the first one: same dash column, same gap
        // after the dash, same key indentation, same flow or block style.
        let first = &items[0];
        let dash_col = self.column_of(self.dash_before(first)?);
        let lead = format!(
            "{}-{}",
            " ".repeat(dash_col),
            " ".repeat(first.col - dash_col - 1)
        );
        let lines = if matches!(first.value, Value::Map { flow: true, .. }) {
            vec![format!("{lead}{}", flow_entry(entry))]
        } else {
            block_entry(entry, &lead, &" ".repeat(first.col))
        };
        Ok(vec![match before {
            Some(i) => {
                let at = self.line_start(self.dash_before(&items[i])?);
                let text: String = lines
                    .iter()
                    .map(|l| format!("{l}{}", self.newline))
                    .collect();
                Splice {
                    start: at,
                    end: at,
                    text,
                }
            }
            None => self.insert_lines_after(list.end, &lines),
        }])
    }

    fn replace_value(&self, key: &Node, value: &Node, new: &str) -> Result<Splice, EditError> {
        let Value::Scalar { style, text } = &value.value else {
            return Err(value.err(format!(
                "{} must be a string",
                key.scalar().unwrap_or("value")
            )));
        };
        let rendered = match style {
            _ if value.start == value.end => {
                // An empty value (`newTag:`): write after the colon.
                let at = self.pair_end(key, value);
                return Ok(Splice {
                    start: at,
                    end: at,
                    text: format!(" {}", plain_or_quoted(new)),
                });
            }
            ScalarStyle::Plain => plain_or_quoted(new),
            ScalarStyle::SingleQuoted => format!("'{}'", new.replace('\'', "''")),
            ScalarStyle::DoubleQuoted => double_quoted(new),
            ScalarStyle::Literal | ScalarStyle::Folded => {
                return Err(value.err(format!(
                    "{} {text:?} is a block scalar (| or >); write it as a plain or quoted string",
                    key.scalar().unwrap_or("value")
                )));
            }
        };
        Ok(Splice {
            start: value.start,
            end: value.end,
            text: rendered,
        })
    }

    fn remove_pair(&self, pairs: &[(Node, Node)], pair: &(Node, Node), flow: bool) -> Splice {
        let index = pairs
            .iter()
            .position(|p| std::ptr::eq(p, pair))
            .expect("pair is in pairs");
        let (key, value) = pair;
        let end = self.pair_end(key, value);
        let next_key_start = pairs.get(index + 1).map(|(k, _)| k.start);
        if flow {
            return match index {
                0 => Splice {
                    start: key.start,
                    end: next_key_start.unwrap_or(end),
                    text: String::new(),
                },
                _ => {
                    let (pk, pv) = &pairs[index - 1];
                    Splice {
                        start: self.pair_end(pk, pv),
                        end,
                        text: String::new(),
                    }
                }
            };
        }
        let line_start = self.line_start(key.start);
        if self.src[line_start..key.start].trim().is_empty() {
            // The key starts its line: drop the whole line(s) of the pair.
            Splice {
                start: line_start,
                end: self.after_line(end),
                text: String::new(),
            }
        } else {
            // The key follows `- `: pull the next key up into its place.
            Splice {
                start: key.start,
                end: next_key_start.unwrap_or(end),
                text: String::new(),
            }
        }
    }

    // -----------------------------------------------------------------------
    // Positions.

    /// Where a pair's text ends. An empty value's span sits on the colon, so
    /// for those the pair ends just after the colon.
    fn pair_end(&self, key: &Node, value: &Node) -> usize {
        if value.start == value.end && value.scalar() == Some("") {
            let colon = self.src[key.end..]
                .find(':')
                .map_or(key.end, |i| key.end + i + 1);
            colon.max(value.end)
        } else {
            value.end
        }
    }

    fn line_start(&self, at: usize) -> usize {
        self.src[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    /// The start of the line after the one containing `at` (or the end of input).
    fn after_line(&self, at: usize) -> usize {
        if at > 0 && self.src.as_bytes()[at - 1] == b'\n' {
            return at;
        }
        self.src[at..]
            .find('\n')
            .map_or(self.src.len(), |i| at + i + 1)
    }

    fn column_of(&self, at: usize) -> usize {
        self.src[self.line_start(at)..at].chars().count()
    }

    /// The byte offset of the `-` that introduces a block sequence item.
    fn dash_before(&self, item: &Node) -> Result<usize, EditError> {
        let before = self.src[..item.start].trim_end_matches([' ', '\t']);
        if before.ends_with('-') {
            Ok(before.len() - 1)
        } else {
            Err(item.err("cannot find the '-' of this images entry"))
        }
    }

    /// Inserts whole lines after the line containing `at`.
    fn insert_lines_after(&self, at: usize, lines: &[String]) -> Splice {
        let pos = self.after_line(at);
        let nl = self.newline;
        let mut text: String = lines.iter().map(|l| format!("{l}{nl}")).collect();
        if pos == self.src.len() && !self.src.ends_with('\n') {
            // The file has no final newline: keep it that way.
            text = format!("{nl}{}", text.strip_suffix(nl).unwrap_or(&text));
        }
        Splice {
            start: pos,
            end: pos,
            text,
        }
    }
}

fn entry_name(item: &Node) -> &str {
    match &item.value {
        Value::Map { pairs, .. } => Node::get(pairs, "name")
            .and_then(|(_, v)| v.scalar())
            .unwrap_or(""),
        _ => "",
    }
}

/// The three editable fields, in kustomize's order, before and after.
fn fields<'a>(
    old: &'a ImageEntry,
    new: &'a ImageEntry,
) -> [(&'static str, Option<&'a str>, Option<&'a str>); 3] {
    [
        ("newName", old.new_name.as_deref(), new.new_name.as_deref()),
        ("newTag", old.new_tag.as_deref(), new.new_tag.as_deref()),
        ("digest", old.digest.as_deref(), new.digest.as_deref()),
    ]
}

fn entry_fields(entry: &ImageEntry) -> Vec<(&'static str, &str)> {
    let optional = [
        ("newName", &entry.new_name),
        ("newTag", &entry.new_tag),
        ("digest", &entry.digest),
    ];
    std::iter::once(("name", entry.name.as_str()))
        .chain(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
        )
        .collect()
}

/// `first_lead` is what precedes the first key (`- ` and its indentation).
fn block_entry(entry: &ImageEntry, first_lead: &str, key_indent: &str) -> Vec<String> {
    entry_fields(entry)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let lead = if i == 0 { first_lead } else { key_indent };
            format!("{lead}{k}: {}", plain_or_quoted(v))
        })
        .collect()
}

fn flow_entry(entry: &ImageEntry) -> String {
    let body: Vec<String> = entry_fields(entry)
        .into_iter()
        .map(|(k, v)| format!("{k}: {}", plain_or_quoted(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Plain when the text reads back as the same string in YAML 1.1 and 1.2
/// (so `1.10` or `yes` do not turn into a number or a bool), else quoted.
fn plain_or_quoted(s: &str) -> String {
    if is_plain_string(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

fn is_plain_string(s: &str) -> bool {
    let safe_char = |c: char| c.is_ascii_alphanumeric() || "._/:@+-".contains(c);
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphanumeric() || first == '_' || first == '/')
        || !s.chars().all(safe_char)
        || s.ends_with(':')
    {
        return false;
    }
    const SPECIAL: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null"];
    if SPECIAL.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    !looks_numeric(s) && !looks_like_date(s)
}

/// Integers, floats, hex/octal/binary, and YAML 1.1 sexagesimal (`1:30`).
fn looks_numeric(s: &str) -> bool {
    let body = s.trim_start_matches(['+', '-']).replace('_', "");
    if body.is_empty() {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    if ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    if body.split(':').count() > 1
        && body
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
    {
        return true;
    }
    body.parse::<f64>().is_ok() && !lower.contains("inf") && !lower.contains("nan")
        || lower == ".inf"
        || lower == ".nan"
}

fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}
