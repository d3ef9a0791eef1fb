//! `gantry promote`: the specs that make one environment's `images:`
//! entries match another's exactly, and the before → after table.

use crate::kustomize::image_ref::{Field, ImageEntry, ImageSpec};

/// One image of a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub before: Option<ImageEntry>,
    pub after: ImageEntry,
}

impl Row {
    pub fn changes(&self) -> bool {
        self.before.as_ref() != Some(&self.after)
    }
}

/// Specs copying `from`'s entries (all of them, or those in `only`) into an
/// environment whose entries are `to`. Each spec sets all three fields, so
/// a field `from` lacks is removed from `to` (a stale digest would
/// otherwise keep pinning the old image).
pub fn promotion(
    from: &[ImageEntry],
    to: &[ImageEntry],
    only: &[String],
) -> Result<(Vec<ImageSpec>, Vec<Row>), String> {
    if let Some(missing) = only.iter().find(|n| !from.iter().any(|e| &e.name == *n)) {
        let known: Vec<&str> = from.iter().map(|e| e.name.as_str()).collect();
        return Err(format!(
            "no images entry named {missing:?} to promote (it has: {})",
            known.join(", ")
        ));
    }
    let field = |v: &Option<String>| v.clone().map_or(Field::Unset, Field::Set);
    let mut specs = Vec::new();
    let mut rows = Vec::new();
    for entry in from
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
    {
        let spec = ImageSpec {
            name: entry.name.clone(),
            new_name: field(&entry.new_name),
            new_tag: field(&entry.new_tag),
            digest: field(&entry.digest),
        };
        let before = to.iter().find(|e| e.name == entry.name).cloned();
        rows.push(Row {
            after: spec.apply(before.as_ref()),
            before,
        });
        specs.push(spec);
    }
    Ok((specs, rows))
}

/// `IMAGE  BEFORE (prod)  AFTER`, one line per image; unchanged images say so.
pub fn table(rows: &[Row], env: &str) -> String {
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|r| {
            let before = r
                .before
                .as_ref()
                .map_or("(none)".to_string(), ImageEntry::reference);
            let after = if r.changes() {
                r.after.reference()
            } else {
                "(unchanged)".to_string()
            };
            [r.after.name.clone(), before, after]
        })
        .collect();
    let header = [
        "IMAGE".to_string(),
        format!("{env} BEFORE"),
        "AFTER".to_string(),
    ];
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    for [image, before, after] in std::iter::once(header.clone()).chain(cells) {
        let arrow = if after == "AFTER" { "  " } else { "→ " };
        out.push_str(&format!("{image:<w0$}  {before:<w1$}  {arrow}{after}\n"));
    }
    out
}

/// "Promote staging to prod (backend 1.4.0, frontend 1.4.0)".
pub fn title(from: &str, to: &str, rows: &[Row]) -> String {
    let versions: Vec<String> = rows
        .iter()
        .filter(|r| r.changes())
        .map(|r| {
            let a = &r.after;
            let version = match (&a.new_tag, &a.digest) {
                (Some(tag), _) => tag.clone(),
                (None, Some(d)) => d.chars().take(19).collect(),
                (None, None) => a.reference(),
            };
            format!("{} {version}", a.name)
        })
        .collect();
    format!("Promote {from} to {to} ({})", versions.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(
        name: &str,
        new_name: Option<&str>,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> ImageEntry {
        ImageEntry {
            name: name.into(),
            new_name: new_name.map(String::from),
            new_tag: tag.map(String::from),
            digest: digest.map(String::from),
        }
    }

    #[test]
    fn copies_every_field_and_removes_what_the_source_lacks() {
        let from = [
            e("api", Some("r/api"), Some("2"), None),
            e("web", None, Some("3"), None),
        ];
        let to = [e("api", Some("r/api"), Some("1"), Some("sha256:old"))];
        let (specs, rows) = promotion(&from, &to, &[]).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(rows[0].after, from[0], "the stale digest goes");
        assert_eq!(rows[1].before, None);
        assert_eq!(rows[1].after, from[1], "a new image is added");
        let (_, only) = promotion(&from, &to, &["web".into()]).unwrap();
        assert_eq!(only.len(), 1);
        let err = promotion(&from, &to, &["db".into()]).unwrap_err();
        assert_eq!(
            err,
            "no images entry named \"db\" to promote (it has: api, web)"
        );
        assert_eq!(
            title("staging", "prod", &rows),
            "Promote staging to prod (api 2, web 3)"
        );
    }

    #[test]
    fn table_marks_unchanged_images() {
        let rows = [
            Row {
                before: Some(e("api", None, Some("1"), None)),
                after: e("api", None, Some("2"), None),
            },
            Row {
                before: Some(e("web", None, Some("3"), None)),
                after: e("web", None, Some("3"), None),
            },
        ];
        assert_eq!(
            table(&rows, "prod"),
            "IMAGE  prod BEFORE    AFTER\napi    api:1        → api:2\nweb    web:3        → (unchanged)\n"
        );
    }
}
