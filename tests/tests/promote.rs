//! `gantry promote` golden tests over the example application's overlays:
//! what it prints and exactly which bytes of prod's kustomization change.
//! Regenerate after an intended change with `GANTRY_BLESS=1 cargo test -p
//! gantry-tests --test promote` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_tests::{Remote, gantry, git, golden, repo, run};

/// The example overlays, copied.
fn overlays() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("overlays");
    for env in ["staging", "prod"] {
        let from = repo().join("manifests/example/overlays").join(env);
        fs::create_dir_all(root.join(env)).unwrap();
        fs::copy(
            from.join("kustomization.yaml"),
            root.join(env).join("kustomization.yaml"),
        )
        .unwrap();
    }
    (dir, root)
}

/// `git diff` of two versions of a file, without the header naming temp paths.
fn diff(before: &str, after: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&a, before).unwrap();
    fs::write(&b, after).unwrap();
    let out = Command::new("git")
        .args(["diff", "--no-index", "--no-color", "-U1"])
        .args([&a, &b])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .skip_while(|l| !l.starts_with("@@"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `gantry promote ARGS` in `root` and renders the golden text.
fn promote(root: &Path, args: &[&str]) -> (i32, String) {
    let prod = root.join("prod/kustomization.yaml");
    let before = fs::read_to_string(&prod).unwrap();
    let r = run(gantry().current_dir(root).arg("promote").args(args));
    let after = fs::read_to_string(&prod).unwrap();
    let text = format!(
        "$ gantry promote {}\n{}{}\n--- overlays/prod/kustomization.yaml\n{}",
        args.join(" "),
        r.stdout,
        r.stderr,
        diff(&before, &after)
    );
    (r.code, text)
}

#[test]
fn staging_is_promoted_to_prod() {
    let (_dir, root) = overlays();
    let args = ["--from", "staging", "--to", "prod", "--detailed-exitcode"];
    let (code, text) = promote(&root, &args);
    assert_eq!(code, 2, "{text}");
    golden("promote/all.txt", &text);

    // Again: the environments match, nothing is written.
    let prod = root.join("prod/kustomization.yaml");
    let mtime = fs::metadata(&prod).unwrap().modified().unwrap();
    let (code, text) = promote(&root, &args);
    assert_eq!(code, 0, "{text}");
    golden("promote/already-promoted.txt", &text);
    assert_eq!(fs::metadata(&prod).unwrap().modified().unwrap(), mtime);
}

#[test]
fn one_image_is_promoted_with_its_digest() {
    let (_dir, root) = overlays();
    // Staging pins backend by digest; prod's stale fields must not survive.
    let staging = root.join("staging/kustomization.yaml");
    let text = fs::read_to_string(&staging).unwrap().replace(
        "newTag: \"1.4.0\"\n  - name: frontend",
        "newTag: \"1.4.0\"\n    digest: sha256:4f0d2b2f3c1e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d\n  - name: frontend",
    );
    fs::write(&staging, text).unwrap();
    // Prod pins frontend by a digest staging no longer has: it must go.
    let prod = root.join("prod/kustomization.yaml");
    let text = fs::read_to_string(&prod).unwrap().replace(
        "webapp/frontend\n    newTag: \"1.3.2\"\n",
        "webapp/frontend\n    newTag: \"1.3.2\"\n    digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
    );
    fs::write(&prod, text).unwrap();
    let (code, text) = promote(
        &root,
        &[
            "--from",
            "staging/kustomization.yaml",
            "--to",
            "prod",
            "--image",
            "backend",
            "-i",
            "frontend",
        ],
    );
    assert_eq!(code, 0, "{text}");
    golden("promote/digests.txt", &text);

    let (code, text) = promote(
        &root,
        &["--from", "staging", "--to", "prod", "--image", "database"],
    );
    assert_eq!(code, 1, "{text}");
    golden("promote/unknown-image.txt", &text);
}

/// A GitOps repository holding the example overlays, a clone of it, and
/// prod's kustomization text.
fn example_remote() -> (Remote, PathBuf, String) {
    let read = |env: &str| {
        fs::read_to_string(repo().join(format!(
            "manifests/example/overlays/{env}/kustomization.yaml"
        )))
        .unwrap()
    };
    let prod = read("prod");
    let remote = Remote::new(&[
        ("overlays/staging/kustomization.yaml", &read("staging")),
        ("overlays/prod/kustomization.yaml", &prod),
    ]);
    let clone = remote.clone_as("work", &remote.file_url());
    (remote, clone, prod)
}

#[test]
fn a_promotion_is_committed_and_pushed_like_a_bump() {
    let (remote, clone, prod) = example_remote();
    let r = run(gantry().current_dir(&clone).args([
        "promote",
        "--from",
        "overlays/staging",
        "--to",
        "overlays/prod",
        "--commit",
        "--push",
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("pushed "), "{}", r.stdout);
    let log = remote.log();
    assert!(
        log.lines()
            .next()
            .unwrap()
            .ends_with("|Promote staging to prod (backend 1.4.0, frontend 1.4.0)"),
        "{log}"
    );
    let body = git(&remote.bare, &["log", "-1", "--format=%b", "main"]);
    assert!(body.contains("overlays/prod/kustomization.yaml: backend 123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend:1.3.2 → 123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp/backend:1.4.0"), "{body}");
    assert_eq!(
        remote.show("overlays/prod/kustomization.yaml"),
        prod.replace("newTag: \"1.3.2\"", "newTag: \"1.4.0\"")
    );
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
}

#[test]
fn a_promotion_is_proposed_as_a_pull_request() {
    let (remote, clone, prod) = example_remote();
    let gh = gantry_tests::github::FakeGitHub::start(&remote.bare);
    let r = run(gantry()
        .current_dir(&clone)
        .args([
            "promote",
            "--from",
            "overlays/staging",
            "--to",
            "overlays/prod",
            "--pr",
            "--label",
            "promotion",
        ])
        .args([
            "--github-api-url",
            &gh.url(),
            "--github-repo",
            "acme/gitops",
        ])
        .env("GITHUB_TOKEN", gantry_tests::github::TOKEN));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let pulls = gh.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        pulls[0].title,
        "Promote staging to prod (backend 1.4.0, frontend 1.4.0)"
    );
    assert_eq!(pulls[0].head, "gantry/overlays-prod/backend+frontend");
    assert_eq!(pulls[0].labels, ["promotion"]);
    let branch = git(
        &remote.bare,
        &[
            "show",
            "gantry/overlays-prod/backend+frontend:overlays/prod/kustomization.yaml",
        ],
    );
    assert_eq!(
        branch,
        prod.replace("newTag: \"1.3.2\"", "newTag: \"1.4.0\"")
            .trim_end()
    );
    assert_eq!(
        remote.show("overlays/prod/kustomization.yaml"),
        prod,
        "main is untouched"
    );
}
