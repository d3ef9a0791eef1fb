//! How a bump is told: terminal lines, the commit message, and the
//! Markdown summary table.

use crate::bump::FileEdit;
use crate::kustomization::ImageChange;

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

pub fn commit_message(template: &str, edits: &[FileEdit]) -> String {
    let mut names: Vec<&str> = edits
        .iter()
        .flat_map(|e| e.changes.iter().map(|c| c.after.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let title = match (
        names.as_slice(),
        edits.first().and_then(|e| e.changes.first()),
    ) {
        ([_], Some(change)) => format!("Bump {} to {}", change.after.name, version_of(change)),
        (names, _) => format!("Bump {}", names.join(", ")),
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
    let mut md =
        String::from("### gantry bump\n\n| File | Image | Old | New |\n|---|---|---|---|\n");
    for edit in edits {
        for c in &edit.changes {
            let old = c.before.as_ref().map_or_else(
                || "(new entry)".to_string(),
                |b| format!("`{}`", b.reference()),
            );
            md.push_str(&format!(
                "| `{}` | `{}` | {old} | `{}` |\n",
                edit.path.display(),
                c.after.name,
                c.after.reference()
            ));
        }
    }
    if edits.is_empty() {
        md.push_str("| | | | nothing to change |\n");
    }
    md.push('\n');
    md.push_str(footer);
    md.push('\n');
    md
}
