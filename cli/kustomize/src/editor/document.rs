//! A kustomization, parsed: checked to be one, and its `images:` entries read
//! with the nodes they came from.

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::EditError;
use super::tree::{Builder, Node, Offsets, Value};
use crate::image_ref::ImageEntry;

pub(super) struct Document<'s> {
    pub(super) src: &'s str,
    pub(super) root: Node,
    pub(super) newline: &'static str,
}

pub(super) const KUSTOMIZATION_FIELDS: &[&str] = &[
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
    pub(super) fn parse(src: &'s str) -> Result<Self, EditError> {
        lone_carriage_return(src)?;
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
        doc.no_tabs_in_indentation()?;
        Ok(doc)
    }

    /// Refuses a tab in a line's indentation (outside block scalars, whose
    /// content may hold any): YAML parsers disagree on those (libyaml,
    /// kustomize's, refuses some that saphyr reads), and a line the edit
    /// puts beside one can break the file for kustomize alone (found by
    /// fuzzing).
    fn no_tabs_in_indentation(&self) -> Result<(), EditError> {
        let mut blocks = Vec::new();
        block_scalars(&self.root, &mut blocks);
        let mut start = 0;
        for (i, line) in self.src.split('\n').enumerate() {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            let inside = blocks
                .iter()
                .any(|b: &std::ops::Range<usize>| b.contains(&start));
            if let Some(tab) = line[..indent].find('\t').filter(|_| !inside) {
                return Err(EditError {
                    line: i + 1,
                    col: line[..tab].chars().count() + 1,
                    message: "a tab in the indentation; indent YAML with spaces".into(),
                });
            }
            start += line.len() + 1;
        }
        Ok(())
    }

    pub(super) fn root_pairs(&self) -> &[(Node, Node)] {
        match &self.root.value {
            Value::Map { pairs, .. } => pairs,
            _ => &[],
        }
    }

    pub(super) fn check_is_kustomization(&self) -> Result<(), EditError> {
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
    pub(super) fn images(&self) -> Result<Vec<(ImageEntry, &Node)>, EditError> {
        let Some(list) = images_node(self) else {
            return Ok(Vec::new());
        };
        unique_keys(self.root_pairs(), |k| k == "images")?;
        unshared(list)?;
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
            unique_keys(pairs, |_| true)?;
            known_fields(pairs, i)?;
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
}

/// Refuses a carriage return not followed by a line feed: YAML reads it
/// as a line break, and edits that remove or add whole lines would cut
/// through it.
fn lone_carriage_return(src: &str) -> Result<(), EditError> {
    let Some(at) = src
        .match_indices('\r')
        .map(|(i, _)| i)
        .find(|&i| !src[i + 1..].starts_with('\n'))
    else {
        return Ok(());
    };
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    Err(EditError {
        line: src[..at].matches('\n').count() + 1,
        col: src[line_start..at].chars().count() + 1,
        message: "a carriage return without a line feed (an old Mac line break); \
                  end lines with LF or CRLF"
            .into(),
    })
}

/// Refuses a key given twice (among those `checked`): kustomize reads the
/// last one, and an edit of either could be the one not deployed.
fn unique_keys(pairs: &[(Node, Node)], checked: impl Fn(&str) -> bool) -> Result<(), EditError> {
    for (i, (key, _)) in pairs.iter().enumerate() {
        let Some(name) = key.scalar().filter(|k| checked(k)) else {
            continue;
        };
        if let Some((first, _)) = pairs[..i].iter().find(|(k, _)| k.scalar() == Some(name)) {
            return Err(key.err(format!(
                "duplicate key {name:?} (first at {}:{}): kustomize would use this last one; \
                 remove one of them",
                first.line,
                first.col + 1
            )));
        }
    }
    Ok(())
}

/// The fields of kustomize's Image type.
const IMAGE_FIELDS: &[&str] = &["name", "newName", "newTag", "tagSuffix", "digest"];

/// Refuses a field kustomize's Image does not have: kustomize refuses it
/// too (unknown fields are errors), and YAML parsers disagree on some
/// spellings (`?newTag` is `newTag` to libyaml; found by fuzzing).
fn known_fields(pairs: &[(Node, Node)], i: usize) -> Result<(), EditError> {
    for (key, _) in pairs {
        let name = key.scalar().unwrap_or_default();
        if !IMAGE_FIELDS.contains(&name) {
            return Err(key.err(format!(
                "images[{i}]: unknown field {name:?}; an entry has {}",
                IMAGE_FIELDS.join(", ")
            )));
        }
    }
    Ok(())
}

/// Refuses anchors, aliases and merge keys in the `images:` list: an edit
/// of an anchored value changes every alias of it too, and kustomize reads
/// merged fields that are not written in the entry.
fn unshared(node: &Node) -> Result<(), EditError> {
    let why = if node.anchored {
        Some("an anchor (&)")
    } else if matches!(node.value, Value::Alias) {
        Some("an alias (*)")
    } else {
        None
    };
    if let Some(what) = why {
        return Err(node.err(format!(
            "images: {what} is not supported here (an edit would change every entry sharing the value); \
             write each entry out in full"
        )));
    }
    match &node.value {
        Value::Seq { items, .. } => items.iter().try_for_each(unshared),
        Value::Map { pairs, .. } => pairs.iter().try_for_each(|(k, v)| {
            if k.scalar() == Some("<<") {
                return Err(k.err(
                    "images: a merge key (<<) is not supported here (kustomize reads fields the \
                     entry does not show); write each entry out in full",
                ));
            }
            unshared(k)?;
            unshared(v)
        }),
        Value::Scalar { .. } | Value::Alias => Ok(()),
    }
}

/// The byte spans of the block scalars (`|`, `>`) under `node`.
fn block_scalars(node: &Node, out: &mut Vec<std::ops::Range<usize>>) {
    match &node.value {
        Value::Scalar { style, .. } => {
            if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                out.push(node.start..node.end.max(node.start + 1));
            }
        }
        Value::Seq { items, .. } => items.iter().for_each(|n| block_scalars(n, out)),
        Value::Map { pairs, .. } => pairs.iter().for_each(|(k, v)| {
            block_scalars(k, out);
            block_scalars(v, out);
        }),
        Value::Alias => {}
    }
}

/// The `images:` value, when there is one.
pub(super) fn images_node<'d>(doc: &'d Document<'_>) -> Option<&'d Node> {
    Node::get(doc.root_pairs(), "images").map(|(_, v)| v)
}

pub(super) fn entry_name(item: &Node) -> &str {
    match &item.value {
        Value::Map { pairs, .. } => Node::get(pairs, "name")
            .and_then(|(_, v)| v.scalar())
            .unwrap_or(""),
        _ => "",
    }
}

/// The three editable fields, in kustomize's order, before and after.
pub(super) fn fields<'a>(
    old: &'a ImageEntry,
    new: &'a ImageEntry,
) -> [(&'static str, Option<&'a str>, Option<&'a str>); 3] {
    [
        ("newName", old.new_name.as_deref(), new.new_name.as_deref()),
        ("newTag", old.new_tag.as_deref(), new.new_tag.as_deref()),
        ("digest", old.digest.as_deref(), new.digest.as_deref()),
    ]
}
