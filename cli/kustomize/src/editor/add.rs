//! A new entry: appended to `images:` in the list's own style (block or
//! flow, its indentation), or an `images:` key added when there is none.

use super::document::{Document, entry_name};
use super::format::{block_entry, flow_entry};
use super::tree::{Node, Value};
use super::{EditError, Splice};
use crate::image_ref::ImageEntry;

impl Document<'_> {
    pub(super) fn add_entry(&self, entry: &ImageEntry) -> Result<Vec<Splice>, EditError> {
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
            // Not after a block scalar the file ends in: before its key.
            if self.open_block_scalar().is_some() {
                return Ok(vec![self.insert_lines_before(k.start, &lines)]);
            }
            return Ok(vec![self.insert_lines_after(at, &lines)?]);
        };
        if list.is_null() {
            // `images:` with no list yet: clear any `~` and start the list on the next line.
            let indent = " ".repeat(key.col);
            let lines = block_entry(entry, &format!("{indent}- "), &format!("{indent}  "));
            let mut splices = vec![self.insert_lines_after(key.end, &lines)?];
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
            None => self.insert_lines_after(list.end, &lines)?,
        }])
    }
}
