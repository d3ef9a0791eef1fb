//! Where text goes: pair and line boundaries, columns, and the splices that
//! remove a pair or insert lines.

use super::document::Document;
use super::tree::Node;
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
        if value.start == value.end && value.scalar() == Some("") {
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
    pub(super) fn insert_lines_after(&self, at: usize, lines: &[String]) -> Splice {
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
