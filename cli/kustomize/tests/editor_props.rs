//! Property test of the editor: for generated kustomizations in many layouts
//! and any spec, the bump (1) changes bytes only inside the target entry (or
//! inserts one contiguous block for a new one), and (2) parsing the result
//! with an independent YAML parser gives exactly kustomize's `images`
//! semantics, with every other field unchanged.

use std::collections::BTreeMap;

use gantry_kustomize::editor::{Missing, set_images};
use gantry_kustomize::image_ref::{Field, ImageEntry, ImageSpec};
use proptest::prelude::*;

const NAMES: &[&str] = &["api", "app", "cache", "db", "web"];
const NEW_NAMES: &[&str] = &[
    "repo/app",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
    "localhost:5000/x/y",
];
const TAGS: &[&str] = &["v1", "1.10", "2", "latest", "1.2.3", "yes", "sha-0a1b2c"];
const DIGESTS: &[&str] = &[
    "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "sha256:2222222222222222222222222222222222222222222222222222222222222222",
];

#[derive(Debug, Clone, Copy)]
enum Quote {
    Plain,
    Single,
    Double,
}

#[derive(Debug, Clone)]
struct GenEntry {
    fields: Vec<(&'static str, &'static str, Quote)>,
    flow: bool,
    gap: usize,
    comment: bool,
}

#[derive(Debug, Clone)]
struct GenDoc {
    indent: usize,
    crlf: bool,
    header_comment: bool,
    images: Option<Vec<GenEntry>>,
    trailing_key: bool,
    blank_between: bool,
}

fn quote(v: &str, q: Quote) -> String {
    match q {
        // Values that a plain scalar would turn into a number or bool are quoted,
        // as a person writing the file would.
        Quote::Plain if v.parse::<f64>().is_err() && v != "yes" => v.to_string(),
        Quote::Single => format!("'{v}'"),
        _ => format!("\"{v}\""),
    }
}

fn quote_strategy() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

fn entry_strategy(name: &'static str) -> impl Strategy<Value = GenEntry> {
    (
        proptest::option::of((proptest::sample::select(NEW_NAMES), quote_strategy())),
        proptest::option::of((proptest::sample::select(TAGS), quote_strategy())),
        proptest::option::of((proptest::sample::select(DIGESTS), quote_strategy())),
        any::<bool>(),
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(n, t, d, flow, gap, comment, digest_first)| {
            let mut fields = vec![("name", name, Quote::Plain)];
            if let Some((v, q)) = n {
                fields.push(("newName", v, q));
            }
            if let Some((v, q)) = t {
                fields.push(("newTag", v, q));
            }
            if let Some((v, q)) = d {
                if digest_first {
                    fields.insert(0, ("digest", v, q));
                } else {
                    fields.push(("digest", v, q));
                }
            }
            GenEntry {
                fields,
                flow,
                gap: gap + 1,
                comment,
            }
        })
}

fn doc_strategy() -> impl Strategy<Value = GenDoc> {
    let entries = proptest::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len())
        .prop_flat_map(|names| names.into_iter().map(entry_strategy).collect::<Vec<_>>());
    (
        0usize..3,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(entries),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(indent, crlf, header_comment, images, trailing_key, blank_between)| GenDoc {
                indent: indent * 2,
                crlf,
                header_comment,
                images,
                trailing_key,
                blank_between,
            },
        )
}

/// Renders the document; returns the text and, per entry, its byte range.
fn render(doc: &GenDoc) -> (String, Vec<(usize, usize)>) {
    let mut lines: Vec<(String, Option<usize>)> = Vec::new();
    if doc.header_comment {
        lines.push(("# generated overlay".into(), None));
    }
    lines.push(("apiVersion: kustomize.config.k8s.io/v1beta1".into(), None));
    lines.push(("resources:".into(), None));
    lines.push(("- ../base # base".into(), None));
    if let Some(entries) = &doc.images {
        lines.push(("images: # pinned by CI".into(), None));
        let ind = " ".repeat(doc.indent);
        for (i, e) in entries.iter().enumerate() {
            let comment = if e.comment { "  # note" } else { "" };
            if e.flow {
                let body: Vec<String> = e
                    .fields
                    .iter()
                    .map(|(k, v, q)| format!("{k}: {}", quote(v, *q)))
                    .collect();
                lines.push((
                    format!(
                        "{ind}-{}{{{}}}{comment}",
                        " ".repeat(e.gap),
                        body.join(", ")
                    ),
                    Some(i),
                ));
            } else {
                let pad = " ".repeat(doc.indent + 1 + e.gap);
                for (j, (k, v, q)) in e.fields.iter().enumerate() {
                    let lead = if j == 0 {
                        format!("{ind}-{}", " ".repeat(e.gap))
                    } else {
                        pad.clone()
                    };
                    let c = if j == 0 { comment } else { "" };
                    lines.push((format!("{lead}{k}: {}{c}", quote(v, *q)), Some(i)));
                }
            }
            if doc.blank_between {
                lines.push((String::new(), None));
            }
        }
    }
    if doc.trailing_key {
        lines.push(("namespace: shop # ns".into(), None));
    }
    let nl = if doc.crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    let mut ranges = vec![(usize::MAX, 0); doc.images.as_ref().map_or(0, Vec::len)];
    for (line, owner) in lines {
        if let Some(i) = owner {
            ranges[i].0 = ranges[i].0.min(text.len());
        }
        text.push_str(&line);
        text.push_str(nl);
        if let Some(i) = owner {
            ranges[i].1 = text.len();
        }
    }
    (text, ranges)
}

fn field_strategy(values: &'static [&'static str]) -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::Unset),
        Just(Field::Preserve),
        proptest::sample::select(values).prop_map(|v| Field::Set(v.to_string())),
    ]
}

fn spec_strategy() -> impl Strategy<Value = ImageSpec> {
    (
        proptest::sample::select([NAMES, &["zeta", "aaa"]].concat()),
        field_strategy(NEW_NAMES),
        field_strategy(TAGS),
        field_strategy(DIGESTS),
    )
        .prop_map(|(name, new_name, new_tag, digest)| ImageSpec {
            name: name.into(),
            new_name,
            new_tag,
            digest,
        })
}

/// The images and the other top-level fields, read by serde_yaml.
fn semantics(text: &str) -> (Vec<ImageEntry>, BTreeMap<String, serde_yaml::Value>) {
    let value: serde_yaml::Value = serde_yaml::from_str(text).expect("result parses");
    let map = value.as_mapping().expect("mapping");
    let mut others = BTreeMap::new();
    let mut images = Vec::new();
    for (k, v) in map {
        let k = k.as_str().unwrap().to_string();
        if k != "images" {
            others.insert(k, v.clone());
            continue;
        }
        for item in v.as_sequence().into_iter().flatten() {
            let get = |f: &str| {
                item.get(f)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(String::from)
            };
            images.push(ImageEntry {
                name: get("name").unwrap(),
                new_name: get("newName"),
                new_tag: get("newTag"),
                digest: get("digest"),
            });
        }
    }
    (images, others)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

fn common_suffix(a: &str, b: &str) -> usize {
    a.bytes()
        .rev()
        .zip(b.bytes().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn bump_changes_only_the_target_entry(doc in doc_strategy(), spec in spec_strategy()) {
        let (text, ranges) = render(&doc);
        let (before_images, before_others) = semantics(&text);
        let (out, changes) = set_images(&text, std::slice::from_ref(&spec), Missing::Create).unwrap();
        let (after_images, after_others) = semantics(&out);

        // (2) kustomize's semantics, by an independent parser.
        prop_assert_eq!(before_others, after_others);
        let target = before_images.iter().position(|e| e.name == spec.name);
        let mut expected = before_images.clone();
        match target {
            Some(i) => expected[i] = spec.apply(Some(&before_images[i])),
            None => expected.push(spec.apply(None)),
        }
        let mut got_sorted = after_images.clone();
        got_sorted.sort_by(|a, b| a.name.cmp(&b.name));
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        prop_assert_eq!(&got_sorted, &expected);
        prop_assert_eq!(changes.is_empty(), out == text);

        // (1) bytes outside the target entry are untouched.
        let (p, s) = (common_prefix(&text, &out), common_suffix(&text, &out));
        match target {
            Some(i) => {
                let (start, end) = ranges[i];
                prop_assert!(p >= start, "changed before the entry: prefix {} < {}", p, start);
                prop_assert!(s >= text.len() - end, "changed after the entry");
            }
            None => prop_assert!(p + s >= text.len(), "the new entry is not one contiguous insertion"),
        }
        // Existing entries keep their order.
        let kept: Vec<_> = after_images.iter().map(|e| &e.name).filter(|n| **n != spec.name).collect();
        let before: Vec<_> = before_images.iter().map(|e| &e.name).filter(|n| **n != spec.name).collect();
        prop_assert_eq!(kept, before);
    }
}
