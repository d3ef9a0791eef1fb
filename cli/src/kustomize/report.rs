//! How a bump is told: terminal lines, the commit message, and the
//! Markdown summary table.

use crate::kustomize::bump::FileEdit;
use crate::kustomize::editor::ImageChange;
use crate::kustomize::image_ref::ImageEntry;

/// `backend 1.4.0 → 1.5.0`, naming the new reference in full.
pub fn describe(change: &ImageChange) -> String {
    let old = change
        .before
        .as_ref()
        .map_or_else(|| "(new entry)".to_string(), |b| b.reference());
    format!("{} {old} → {}", change.after.name, change.after.reference())
}

/// The default commit message template. `{title}`, `{changes}` and
/// `{images}` are replaced.
pub const DEFAULT_MESSAGE: &str = "{title}\n\n{changes}\n";

/// The message for `edits`; `title` replaces the derived `{title}`.
pub fn commit_message(template: &str, title: Option<&str>, edits: &[FileEdit]) -> String {
    let mut names: Vec<&str> = edits
        .iter()
        .flat_map(|e| e.changes.iter().map(|c| c.after.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let title = match (
        title,
        names.as_slice(),
        edits.first().and_then(|e| e.changes.first()),
    ) {
        (Some(title), _, _) => title.to_string(),
        (None, [_], Some(change)) => {
            format!("Bump {} to {}", change.after.name, version_of(change))
        }
        (None, names, _) => format!("Bump {}", names.join(", ")),
    };
    let changes: Vec<String> = edits
        .iter()
        .flat_map(|e| {
            e.changes
                .iter()
                .map(move |c| format!("- {}: {}", e.path.display(), describe(c)))
        })
        .collect();
    template
        .replace("{title}", &title)
        .replace("{changes}", &changes.join("\n"))
        .replace("{images}", &names.join(", "))
}

/// The tag, else the digest, else the new name: what a reader wants in a title.
fn version_of(change: &ImageChange) -> String {
    let a = &change.after;
    a.new_tag
        .clone()
        .or_else(|| a.digest.clone())
        .or_else(|| a.new_name.clone())
        .unwrap_or_default()
}

pub fn markdown_summary(edits: &[FileEdit], footer: &str) -> String {
    let rows: Vec<(String, &ImageChange)> = edits
        .iter()
        .flat_map(|e| e.changes.iter().map(|c| (e.path.display().to_string(), c)))
        .collect();
    format!("### gantry bump\n\n{}\n{footer}\n", changes_table(&rows))
}

/// A Markdown table of image changes (file, image, old, new), the new
/// reference linked to its digest's page when the registry has one.
pub fn changes_table(rows: &[(String, &ImageChange)]) -> String {
    let mut md = String::from("| File | Image | Old | New |\n|---|---|---|---|\n");
    for (path, c) in rows {
        let old = c.before.as_ref().map_or_else(
            || "(new entry)".to_string(),
            |b| format!("`{}`", b.reference()),
        );
        let new = match digest_link(&c.after) {
            Some(url) => format!("[`{}`]({url})", c.after.reference()),
            None => format!("`{}`", c.after.reference()),
        };
        md.push_str(&format!(
            "| `{path}` | `{}` | {old} | {new} |\n",
            c.after.name
        ));
    }
    if rows.is_empty() {
        md.push_str("| | | | nothing to change |\n");
    }
    md
}

/// The web page of the image an entry pins by digest, for the registries
/// whose page addresses are known: ECR (the AWS console), Quay and Docker Hub.
pub fn digest_link(entry: &ImageEntry) -> Option<String> {
    let digest = entry.digest.as_deref()?;
    let name = entry.new_name.as_deref().unwrap_or(&entry.name);
    let (host, path) = match name.split_once('/') {
        Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => (h, p),
        _ => ("docker.io", name),
    };
    let ecr: Vec<&str> = host.split('.').collect();
    if let [account, "dkr", "ecr", region, "amazonaws", ..] = ecr.as_slice() {
        return Some(format!(
            "https://{region}.console.aws.amazon.com/ecr/repositories/private/{account}/{path}/_/image/{digest}/details?region={region}"
        ));
    }
    match host {
        "quay.io" => Some(format!(
            "https://quay.io/repository/{path}/manifest/{digest}"
        )),
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            let path = if path.contains('/') {
                path.to_string()
            } else {
                format!("library/{path}")
            };
            let tag = entry.new_tag.as_deref().unwrap_or("latest");
            Some(format!(
                "https://hub.docker.com/layers/{path}/{tag}/images/{}",
                digest.replacen(':', "-", 1)
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(new_name: &str, tag: Option<&str>, digest: Option<&str>) -> ImageEntry {
        ImageEntry {
            name: "app".into(),
            new_name: Some(new_name.into()),
            new_tag: tag.map(String::from),
            digest: digest.map(String::from),
        }
    }

    #[test]
    fn digest_pages() {
        let d = Some("sha256:abc");
        assert_eq!(
            digest_link(&entry(
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend",
                Some("1.4.0"),
                d
            ))
            .as_deref(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/ecr/repositories/private/123456789012/webapp/backend/_/image/sha256:abc/details?region=eu-west-1"
            )
        );
        assert_eq!(
            digest_link(&entry("quay.io/acme/api", None, d)).as_deref(),
            Some("https://quay.io/repository/acme/api/manifest/sha256:abc")
        );
        assert_eq!(
            digest_link(&entry("nginx", Some("1.27"), d)).as_deref(),
            Some("https://hub.docker.com/layers/library/nginx/1.27/images/sha256-abc")
        );
        assert_eq!(
            digest_link(&entry("registry.example.com/app", None, d)),
            None
        );
        assert_eq!(
            digest_link(&entry("quay.io/acme/api", Some("1"), None)),
            None
        );
    }
}
