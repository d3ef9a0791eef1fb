//! What a bump's pull request is called and says, and which older pull
//! requests it replaces. Pure text and set logic; the GitHub calls are in
//! `deliver`'s GitHub deliveries.

use std::collections::BTreeSet;

use sha2::{Digest as _, Sha256};

use crate::kustomize::bump::FileEdit;
use crate::kustomize::report;

/// The default branch template: one branch (so one pull request) per set
/// of directories and images, whatever the versions, so that a re-run or a
/// newer version of the same images updates the same pull request.
pub const DEFAULT_BRANCH: &str = "gantry/{dirs}/{images}";

/// Marks a pull request gantry opened and lists what it sets.
const MARKER: &str = "<!-- gantry:entries ";

/// The `file#image` entries a bump sets (files repo-relative).
pub fn entries(files: &[(String, FileEdit)]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|(rel, e)| {
            e.changes
                .iter()
                .map(move |c| format!("{rel}#{}", c.after.name))
        })
        .collect()
}

/// The branch for a bump: `template` with `{images}` (the changed image
/// names), `{dirs}` (the edited files' directories) and `{versions}` (the
/// new tags or digests) filled in, each list sorted and joined by `+`.
pub fn branch_name(template: &str, files: &[(String, FileEdit)]) -> Result<String, String> {
    let changes = || files.iter().flat_map(|(_, e)| e.changes.iter());
    let joined = |items: BTreeSet<String>| {
        let slugs: Vec<String> = items.iter().map(|i| slug(i)).collect();
        shorten(&slugs.join("+"))
    };
    let images = joined(changes().map(|c| c.after.name.clone()).collect());
    let dirs = joined(
        files
            .iter()
            .map(|(rel, _)| match rel.rsplit_once('/') {
                Some((dir, _)) => dir.to_string(),
                None => "root".to_string(),
            })
            .collect(),
    );
    let versions = joined(
        changes()
            .map(|c| {
                let a = &c.after;
                match (&a.new_tag, &a.digest) {
                    (Some(tag), _) => tag.clone(),
                    (None, Some(d)) => d.trim_start_matches("sha256:").chars().take(12).collect(),
                    (None, None) => a.reference(),
                }
            })
            .collect(),
    );
    let name = template
        .replace("{images}", &images)
        .replace("{dirs}", &dirs)
        .replace("{versions}", &versions);
    if git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        Ok(name)
    } else {
        Err(format!(
            "--pr-branch {template:?} gives {name:?}, which is not a valid branch name"
        ))
    }
}

/// Characters git and GitHub accept in a branch name without fuss.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// Keeps a name part readable: past 60 characters, its start and a hash
/// of the whole.
fn shorten(s: &str) -> String {
    if s.len() <= 60 {
        return s.to_string();
    }
    let hash = Sha256::digest(s.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut cut = 50;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hex}", s[..cut].trim_end_matches(['-', '+', '.']))
}

/// The pull request's body: the changes as a table, and the marker by which
/// later runs recognise it.
pub fn body(base: &str, files: &[(String, FileEdit)]) -> String {
    let rows: Vec<(String, &crate::kustomize::editor::ImageChange)> = files
        .iter()
        .flat_map(|(rel, e)| e.changes.iter().map(move |c| (rel.clone(), c)))
        .collect();
    let marker = serde_json::to_string(&entries(files)).unwrap_or_default();
    format!(
        "Sets these images on `{base}`:\n\n{}\nPrepared by gantry. Running the same bump again updates this pull \
         request; a newer bump of these images replaces it.\n\n{MARKER}{marker} -->\n",
        report::changes_table(&rows)
    )
}

/// The entries a gantry pull request's body lists; None for other bodies.
pub fn parse_entries(body: &str) -> Option<BTreeSet<String>> {
    let start = body.find(MARKER)? + MARKER.len();
    let end = body[start..].find(" -->")? + start;
    serde_json::from_str(&body[start..end]).ok()
}

/// An older pull request is superseded when everything it sets, this bump
/// sets too.
pub fn supersedes(ours: &BTreeSet<String>, theirs: &BTreeSet<String>) -> bool {
    !theirs.is_empty() && theirs.is_subset(ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kustomize::editor::Missing;
    use crate::kustomize::image_ref::ImageSpec;

    fn bumped(rel: &str, text: &str, specs: &[&str]) -> (String, FileEdit) {
        let specs: Vec<ImageSpec> = specs.iter().map(|s| ImageSpec::parse(s).unwrap()).collect();
        let target = crate::kustomize::bump::Target {
            path: rel.into(),
            missing: Missing::Create,
        };
        (
            rel.to_string(),
            crate::kustomize::bump::edit_text(&target, text.to_string(), &specs).unwrap(),
        )
    }

    const K: &str =
        "images:\n- name: backend\n  newTag: 1.3.2\n- name: frontend\n  newTag: 1.3.2\n";

    #[test]
    fn branch_names_follow_images_and_directories() {
        let prod = bumped(
            "overlays/prod/kustomization.yaml",
            K,
            &[
                "frontend:1.4.0",
                "backend:1.4.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ],
        );
        assert_eq!(
            branch_name(DEFAULT_BRANCH, std::slice::from_ref(&prod)).unwrap(),
            "gantry/overlays-prod/backend+frontend"
        );
        assert_eq!(
            branch_name("bump/{images}-{versions}", std::slice::from_ref(&prod)).unwrap(),
            "bump/backend+frontend-1.4.0"
        );
        let root = bumped(
            "kustomization.yaml",
            K,
            &["backend@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],
        );
        assert_eq!(
            branch_name("x/{dirs}/{versions}", &[root]).unwrap(),
            "x/root/0123456789ab"
        );
        assert!(
            branch_name("bad..{images}", &[prod])
                .unwrap_err()
                .contains("not a valid branch name")
        );
        let long = shorten(&"a".repeat(80));
        assert_eq!(long.len(), 59);
        assert_eq!(long, shorten(&"a".repeat(80)), "stable");
    }

    #[test]
    fn body_lists_changes_and_round_trips_its_entries() {
        let files = vec![bumped(
            "overlays/prod/kustomization.yaml",
            K,
            &[
                "backend=123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend:1.4.0@sha256:abababababababababababababababababababababababababababababababab",
            ],
        )];
        let body = body("main", &files);
        assert!(body.contains("Sets these images on `main`"), "{body}");
        assert!(body.contains("| `overlays/prod/kustomization.yaml` | `backend` | `backend:1.3.2` | [`123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend:1.4.0@sha256:abababababababababababababababababababababababababababababababab`](https://eu-west-1.console.aws.amazon.com/"), "{body}");
        let parsed = parse_entries(&body).unwrap();
        assert_eq!(parsed, entries(&files));
        assert_eq!(parse_entries("written by a person"), None);
    }

    #[test]
    fn a_bump_supersedes_only_what_it_covers() {
        let set = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        let ours = set(&["p#backend", "p#frontend"]);
        assert!(supersedes(&ours, &set(&["p#backend"])));
        assert!(supersedes(&ours, &set(&["p#backend", "p#frontend"])));
        assert!(!supersedes(&ours, &set(&["p#backend", "s#backend"])));
        assert!(!supersedes(&ours, &set(&[])));
    }
}
