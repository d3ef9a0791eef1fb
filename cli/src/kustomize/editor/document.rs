//! A kustomization, parsed: checked to be one, and its `images:` entries read
//! with the nodes they came from.

use saphyr_parser::{Event, Parser};

use super::EditError;
use super::tree::{Builder, Node, Offsets, Value};
use crate::kustomize::image_ref::ImageEntry;

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
