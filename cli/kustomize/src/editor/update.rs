//! Changing an existing entry: each field's value replaced in place, added
//! beside its siblings, or removed with its line.

use saphyr_parser::ScalarStyle;

use super::document::{Document, fields};
use super::format::{double_quoted, plain_or_quoted};
use super::tree::{Node, Value};
use super::{EditError, Splice};
use crate::image_ref::ImageEntry;

impl Document<'_> {
    pub(super) fn update_entry(
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
                // After an empty value the colon needs its space: `k:,` is
                // not a key without a value to libyaml (nor to kustomize).
                let space = if last_value.is_empty_scalar() {
                    " "
                } else {
                    ""
                };
                let text: String = added
                    .iter()
                    .map(|(k, v)| format!(", {k}: {}", plain_or_quoted(v)))
                    .collect();
                let text = format!("{space}{text}");
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
                self.insert_lines_after(at, &lines)?
            });
        }
        Ok(splices)
    }

    pub(super) fn replace_value(
        &self,
        key: &Node,
        value: &Node,
        new: &str,
    ) -> Result<Splice, EditError> {
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
}
