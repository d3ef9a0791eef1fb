#![no_main]
//! `gantry bump`'s editor on any text, asked what `gantry bump -i` asks (a
//! tag, a digest, a new name and tag for the file's first image, else
//! `app`). It never panics, and an edit it makes is exactly the one asked:
//! - read by another YAML parser, the output is the input's document with
//!   only that entry's newName, newTag and digest changed (empty or null
//!   ones count as absent, as kustomize's omitempty has it);
//! - the bytes outside that entry's lines (for a new entry: outside the
//!   `images:` list's, or none at all) are the input's.

use std::ops::Range;

use gantry_kustomize::editor::{ImageChange, Missing, read_images, set_images, spans};
use gantry_kustomize::image_ref::ImageSpec;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

const DIGEST: &str = "sha256:24a0c4b4a4c0eb97a1aabb8e29f18e917d05abfe1b7a7c07857230879ce7d3d3";
const FIELDS: [&str; 3] = ["newName", "newTag", "digest"];

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let first = read_images(src).ok().and_then(|e| e.into_iter().next());
    let name = first.map_or_else(|| "app".to_string(), |e| e.name);
    let arg = match data.len() % 3 {
        0 => format!("{name}=*:9.9.9"),
        1 => format!("{name}@{DIGEST}"),
        _ => format!("{name}=registry.example/new:1.0"),
    };
    let Ok(spec) = ImageSpec::parse(&arg) else {
        return;
    };
    let Ok((out, changes)) = set_images(src, &[spec], Missing::Create) else {
        return;
    };
    let Some(change) = changes.first() else {
        assert_eq!(out, src, "nothing changed, yet the text did");
        return;
    };
    same_document_but(src, &out, change);
    same_bytes_outside(src, &out, change);
});

/// The first document, its tags dropped (the editor reads `! x` and
/// `!!str x` as the string they tag).
fn first_document(text: &str) -> Option<Result<Value, serde_yaml::Error>> {
    let doc = serde_yaml::Deserializer::from_str(text).next()?;
    Some(Value::deserialize(doc).map(untagged))
}

fn untagged(v: Value) -> Value {
    match v {
        Value::Tagged(t) => untagged(t.value),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(untagged).collect()),
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .map(|(k, v)| (untagged(k), untagged(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The output's document is the input's with `change` made.
fn same_document_but(src: &str, out: &str, change: &ImageChange) {
    // Only what the other parser reads too can be compared.
    let Some(Ok(mut want)) = first_document(src) else {
        return;
    };
    let got = match first_document(out) {
        Some(Ok(v)) => v,
        other => panic!("the input parses, the output does not: {other:?}\n{out}"),
    };
    let Value::Mapping(root) = &mut want else {
        return;
    };
    let images = root
        .entry("images".into())
        .or_insert(Value::Sequence(Vec::new()));
    if images.is_null() {
        *images = Value::Sequence(Vec::new());
    }
    let Value::Sequence(entries) = images else {
        return;
    };
    let after = &change.after;
    let name = text(&Value::String(after.name.clone()));
    let at = entries
        .iter()
        .position(|e| e.get("name").and_then(text) == name);
    let entry = match at {
        Some(i) => &mut entries[i],
        None => {
            let mut m = Mapping::new();
            m.insert("name".into(), after.name.clone().into());
            entries.push(Value::Mapping(m));
            entries.last_mut().unwrap()
        }
    };
    let Value::Mapping(entry) = entry else {
        return;
    };
    for (key, value) in FIELDS
        .iter()
        .zip([&after.new_name, &after.new_tag, &after.digest])
    {
        match value {
            Some(v) => entry.insert((*key).into(), v.clone().into()),
            None => entry.remove(*key),
        };
    }
    assert_eq!(
        normalized(want),
        normalized(got),
        "the output is not the input with {after:?} set:\n--- input\n{src}\n--- output\n{out}"
    );
}

/// A scalar as kustomize's string fields read it. A number's text is
/// gone once parsed (`! 1e3`, tagged a string, reads back as 1000), so
/// anything numeric compares as its value.
fn text(v: &Value) -> Option<String> {
    let t = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    Some(match t.parse::<f64>() {
        Ok(f) if f.is_finite() => format!("{f:e}"),
        _ => t,
    })
}

/// Image entries' fields as text, empty and null ones gone, the entries by
/// name (the editor puts a new one where kustomize's sorted order has it).
fn normalized(mut doc: Value) -> Value {
    if let Some(Value::Sequence(entries)) = doc.get_mut("images") {
        entries.sort_by_key(|e| e.get("name").and_then(text));
        for entry in entries.iter_mut().filter_map(Value::as_mapping_mut) {
            for key in FIELDS.iter().chain(&["name"]) {
                match entry.get(*key).map(text) {
                    Some(Some(t)) if !t.is_empty() => {
                        entry.insert((*key).into(), t.into());
                    }
                    Some(_) if *key != "name" => {
                        entry.remove(*key);
                    }
                    _ => {}
                }
            }
        }
    }
    doc
}

/// The bytes that differ lie in the edited entry's lines (or, for a new
/// entry, the `images:` list's; with no list, nothing is replaced).
fn same_bytes_outside(src: &str, out: &str, change: &ImageChange) {
    let prefix = common(src.bytes(), out.bytes());
    let suffix = common(src[prefix..].bytes().rev(), out[prefix..].bytes().rev());
    let changed = prefix..src.len() - suffix;
    let where_ = spans(src).expect("the editor parsed it");
    let allowed = match &change.before {
        Some(_) => where_
            .entries
            .iter()
            .find(|(name, _)| *name == change.after.name)
            .map(|(_, span)| span.clone()),
        None => where_.images,
    };
    let Some(allowed) = allowed.map(|span| whole_lines(src, span)) else {
        assert!(
            changed.is_empty(),
            "a new images: list replaced bytes {changed:?}:\n--- input\n{src}\n--- output\n{out}"
        );
        return;
    };
    assert!(
        changed.is_empty() || (allowed.start <= changed.start && changed.end <= allowed.end),
        "bytes {changed:?} changed, outside {allowed:?}:\n--- input\n{src}\n--- output\n{out}"
    );
}

fn common(a: impl Iterator<Item = u8>, b: impl Iterator<Item = u8>) -> usize {
    a.zip(b).take_while(|(x, y)| x == y).count()
}

/// `span` widened to the lines it touches, with their line breaks.
fn whole_lines(src: &str, span: Range<usize>) -> Range<usize> {
    let start = src[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let end = src[span.end..]
        .find('\n')
        .map_or(src.len(), |i| span.end + i + 1);
    start..end
}
