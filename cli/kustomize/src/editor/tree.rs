//! The parsed tree: saphyr-parser's events built into nodes that keep their
//! byte spans, so edits can splice the original text.

use std::iter::Peekable;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, StrInput};

use super::EditError;

#[derive(Debug)]
pub(super) enum Value {
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
pub(super) struct Node {
    pub(super) value: Value,
    /// Byte offsets. Quoted scalars include their quotes; flow collections
    /// include their brackets; block collections end where their last child does.
    pub(super) start: usize,
    pub(super) end: usize,
    /// 1-based line, 0-based column (in characters).
    pub(super) line: usize,
    pub(super) col: usize,
    /// It carries an anchor (`&name`), so aliases elsewhere share it.
    pub(super) anchored: bool,
}

impl Node {
    pub(super) fn err(&self, message: impl Into<String>) -> EditError {
        EditError {
            line: self.line,
            col: self.col + 1,
            message: message.into(),
        }
    }

    pub(super) fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A value left out (`key:`): its span is empty, at the colon.
    pub(super) fn is_empty_scalar(&self) -> bool {
        self.start == self.end && self.scalar() == Some("")
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, style: ScalarStyle::Plain }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub(super) fn get<'a>(pairs: &'a [(Node, Node)], key: &str) -> Option<&'a (Node, Node)> {
        pairs.iter().find(|(k, _)| k.scalar() == Some(key))
    }
}

/// Converts the parser's character indices to byte offsets.
pub(super) struct Offsets(Option<Vec<usize>>);

impl Offsets {
    pub(super) fn new(src: &str) -> Self {
        if src.is_ascii() {
            return Offsets(None);
        }
        let mut v: Vec<usize> = src.char_indices().map(|(b, _)| b).collect();
        v.push(src.len());
        Offsets(Some(v))
    }

    pub(super) fn byte(&self, char_index: usize) -> usize {
        match &self.0 {
            None => char_index,
            Some(v) => v[char_index.min(v.len() - 1)],
        }
    }
}

pub(super) fn scan_error(e: ScanError) -> EditError {
    EditError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: format!("invalid YAML: {}", e.info()),
    }
}

pub(super) struct Builder<'s> {
    pub(super) src: &'s str,
    pub(super) events: Peekable<Parser<'s, StrInput<'s>>>,
    pub(super) offsets: Offsets,
}

/// The offset just past the quote that closes the quoted scalar at `start`.
pub(super) fn closing_quote(src: &str, start: usize) -> Option<usize> {
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
    pub(super) fn next(&mut self) -> Result<(Event<'s>, Span), EditError> {
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

    pub(super) fn node_at(&self, span: &Span, value: Value, end: usize) -> Node {
        Node {
            value,
            start: self.offsets.byte(span.start.index()),
            end,
            line: span.start.line(),
            col: span.start.col(),
            anchored: false,
        }
    }

    /// Reads one node whose first event is `ev`.
    pub(super) fn node(&mut self, ev: Event<'s>, span: Span) -> Result<Node, EditError> {
        let anchored = matches!(
            ev,
            Event::Scalar(_, _, a, _) | Event::SequenceStart(a, _) | Event::MappingStart(a, _) if a > 0
        );
        let mut node = self.unanchored_node(ev, span)?;
        node.anchored = anchored;
        Ok(node)
    }

    fn unanchored_node(&mut self, ev: Event<'s>, span: Span) -> Result<Node, EditError> {
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
