//! A byte-preserving editor for the `images:` list of a kustomization.
//!
//! The file is parsed with `saphyr-parser`, which reports the source span of
//! every scalar and collection. Edits are then splices of the original text:
//! replacing a scalar's span, removing a key's lines, or inserting new lines
//! beside their siblings. Everything outside those splices (comments, blank
//! lines, quoting, key order, document markers, CRLF) is untouched, so
//! changing one tag is a one-line diff.
//!
//! `tree`: the parse with spans; `document`: is it a kustomization, and its
//! entries; `update` and `add`: the edits; `positions`: where text goes;
//! `format`: new YAML text.

use crate::image_ref::{ImageEntry, ImageSpec};

mod add;
mod document;
mod format;
mod positions;
mod tree;
mod update;

use document::Document;

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

/// Where a kustomization's `images:` list and each of its entries are, as
/// byte ranges of `src` (what an edit of that entry may change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans {
    pub images: Option<std::ops::Range<usize>>,
    pub entries: Vec<(String, std::ops::Range<usize>)>,
}

pub fn spans(src: &str) -> Result<Spans, EditError> {
    let doc = Document::parse(src)?;
    let entries = doc.images()?;
    let images = document::images_node(&doc).map(|n| n.start..n.end);
    let entries = entries
        .into_iter()
        .map(|(e, node)| (e.name, node.start..node.end))
        .collect();
    Ok(Spans { images, entries })
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
