//! Where text goes: pair and line boundaries, columns, and the splices that
//! remove a pair or insert lines.

use super::document::Document;
use saphyr_parser::ScalarStyle;

use super::tree::{Node, Value};
use super::{EditError, Splice};

impl Document<'_> {
    pub(super) fn remove_pair(
        &self,
        pairs: &[(Node, Node)],
        pair: &(Node, Node),
        flow: bool,
    ) -> Splice {
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

    /// Where a pair's text ends. An empty value's span sits on the colon, so
    /// for those the pair ends just after the colon.
    pub(super) fn pair_end(&self, key: &Node, value: &Node) -> usize {
        if value.is_empty_scalar() {
            let colon = self.src[key.end..]
                .find(':')
                .map_or(key.end, |i| key.end + i + 1);
            colon.max(value.end)
        } else {
            value.end
        }
    }

    pub(super) fn line_start(&self, at: usize) -> usize {
        self.src[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    /// The start of the line after the one containing `at` (or the end of input).
    pub(super) fn after_line(&self, at: usize) -> usize {
        if at > 0 && self.src.as_bytes()[at - 1] == b'\n' {
            return at;
        }
        self.src[at..]
            .find('\n')
            .map_or(self.src.len(), |i| at + i + 1)
    }

    pub(super) fn column_of(&self, at: usize) -> usize {
        self.src[self.line_start(at)..at].chars().count()
    }

    /// The byte offset of the `-` that introduces a block sequence item.
    pub(super) fn dash_before(&self, item: &Node) -> Result<usize, EditError> {
        let before = self.src[..item.start].trim_end_matches([' ', '\t']);
        if before.ends_with('-') {
            Ok(before.len() - 1)
        } else {
            Err(item.err("cannot find the '-' of this images entry"))
        }
    }

    /// Inserts whole lines after the line containing `at`.
    pub(super) fn insert_lines_after(
        &self,
        at: usize,
        lines: &[String],
    ) -> Result<Splice, EditError> {
        let pos = self.after_line(at);
        let nl = self.newline;
        let mut text: String = lines.iter().map(|l| format!("{l}{nl}")).collect();
        if pos == self.src.len() && !self.src.ends_with('\n') {
            if let Some(block) = self.open_block_scalar() {
                return Err(block.err(
                    "the file ends inside this block scalar (| or >) without a final line \
                     break; lines added after it would become part of its value: end the \
                     file with a line break",
                ));
            }
            // The file has no final newline: keep it that way.
            text = format!("{nl}{}", text.strip_suffix(nl).unwrap_or(&text));
        }
        Ok(Splice {
            start: pos,
            end: pos,
            text,
        })
    }

    /// Inserts whole lines before the line containing `at`.
    pub(super) fn insert_lines_before(&self, at: usize, lines: &[String]) -> Splice {
        let pos = self.line_start(at);
        let text = lines
            .iter()
            .map(|l| format!("{l}{}", self.newline))
            .collect();
        Splice {
            start: pos,
            end: pos,
            text,
        }
    }

    /// The block scalar the file ends in, when it has no final line break:
    /// a line break after it would change its value.
    pub(super) fn open_block_scalar(&self) -> Option<&Node> {
        if self.src.ends_with('\n') {
            return None;
        }
        let mut node = &self.root;
        loop {
            node = match &node.value {
                Value::Map { pairs, .. } => &pairs.last()?.1,
                Value::Seq { items, .. } => items.last()?,
                Value::Scalar { style, .. } => {
                    let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                    return block.then_some(node);
                }
                Value::Alias => return None,
            };
        }
    }
}
