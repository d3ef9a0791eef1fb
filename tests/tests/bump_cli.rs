//! `gantry bump` as a user runs it: files, directories, exit codes, errors,
//! and the GitHub Actions outputs — against the built binary.

use std::fs;
use std::path::Path;

use gantry_tests::{Remote, gantry, git, run};

const STAGING: &str = "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  # the API
  - name: backend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend
    newTag: \"1.4.0\"   # pinned by CI
  - name: frontend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/frontend
    newTag: v2.0.0
";

fn write(dir: &Path, rel: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn bump_edits_one_line_and_says_whether_anything_changed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "kustomization.yaml", STAGING);
    let r = run(gantry().args(["bump", "-f"]).arg(&file).args([
        "-i",
        "backend=*:1.5.0",
        "--detailed-exitcode",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.contains("backend 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:1.4.0 → 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:1.5.0"), "{}", r.stdout);
    let after = fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        STAGING.replace(
            "newTag: \"1.4.0\"   # pinned",
            "newTag: \"1.5.0\"   # pinned"
        )
    );

    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    let r = run(gantry().args(["bump", "-f"]).arg(&file).args([
        "-i",
        "backend=*:1.5.0",
        "--detailed-exitcode",
    ]));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("no change"), "{}", r.stdout);
    assert_eq!(
        fs::metadata(&file).unwrap().modified().unwrap(),
        mtime,
        "an unchanged file is not rewritten"
    );
    // Without --detailed-exitcode a change exits 0 too (safe in `set -e` pipelines).
    let r = run(gantry()
        .args(["bump", "-f"])
        .arg(&file)
        .args(["-i", "frontend=*:v2.1.0"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn dir_bumps_every_overlay_that_names_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let base = "resources:\n- deployment.yaml\n";
    write(dir.path(), "base/kustomization.yaml", base);
    let staging = write(dir.path(), "overlays/staging/kustomization.yaml", STAGING);
    let prod = write(
        dir.path(),
        "overlays/prod/kustomization.yml",
        &STAGING.replace("1.4.0", "1.3.0"),
    );
    let other = write(
        dir.path(),
        "overlays/other/Kustomization",
        "resources: [x]\nimages:\n- name: redis\n  newTag: '7'\n",
    );
    write(dir.path(), ".git/kustomization.yaml", "not: [valid");
    let r = run(gantry()
        .args(["bump", "--dir"])
        .arg(dir.path())
        .args(["-i", "backend=*:2.0.0"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        fs::read_to_string(&staging)
            .unwrap()
            .contains("newTag: \"2.0.0\"")
    );
    assert!(
        fs::read_to_string(&prod)
            .unwrap()
            .contains("newTag: \"2.0.0\"")
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("base/kustomization.yaml")).unwrap(),
        base
    );
    assert!(fs::read_to_string(&other).unwrap().contains("newTag: '7'"));
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);

    let r = run(gantry()
        .args(["bump", "--dir"])
        .arg(dir.path())
        .args(["-i", "bakend:1"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("no kustomization here has an images entry named \"bakend\""),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_input_is_a_clear_error_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "broken.yaml",
            b"images:\n- name: a\n  newTag: [v1\n",
            "broken.yaml:4:1: invalid YAML",
        ),
        (
            "deploy.yaml",
            b"apiVersion: apps/v1\nkind: Deployment\n",
            "deploy.yaml:2:7: kind is \"Deployment\"",
        ),
        (
            "latin1.yaml",
            b"images:\n- name: caf\xe9\n",
            "latin1.yaml:2:12: the file is not valid UTF-8",
        ),
        (
            "list.yaml",
            b"images:\n- name: a\n- name: a\n",
            "list.yaml:3:3: images[1] repeats the name",
        ),
        // The two silent wrong results the fuzzer found (#26).
        (
            "twice.yaml",
            b"images:\n- name: a\n  newTag: \"9.9.9\"\n  newTag: \"1.2\"\n",
            "twice.yaml:4:3: duplicate key \"newTag\" (first at 3:3)",
        ),
        (
            "anchor.yaml",
            b"images: [&a {name: a, newTag: x}, {<<: *a, name: a2}]\n",
            "anchor.yaml:1:10: images: an anchor (&) is not supported here",
        ),
    ];
    for (name, content, want) in cases {
        let file = dir.path().join(name);
        fs::write(&file, content).unwrap();
        let r = run(gantry()
            .args(["bump", "-f"])
            .arg(&file)
            .args(["-i", "a:v2"]));
        assert_eq!(r.code, 1, "{name}");
        assert!(r.stderr.contains(want), "{name}: {}", r.stderr);
        assert_eq!(fs::read(&file).unwrap(), *content, "{name} was modified");
    }
    let file = write(dir.path(), "k.yaml", STAGING);
    for (spec, want) in [
        ("backend", "no tag or digest given"),
        (
            "backend@sha256:1234",
            "sha256 digests are 64 lowercase hex digits",
        ),
        ("Backend:1", "path component \"Backend\""),
    ] {
        let r = run(gantry().args(["bump", "-f"]).arg(&file).args(["-i", spec]));
        assert_eq!(r.code, 2, "clap usage error for {spec}");
        assert!(r.stderr.contains(want), "{spec}: {}", r.stderr);
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), STAGING);
    let r = run(gantry()
        .args(["bump", "-f"])
        .arg(dir.path().join("missing.yaml"))
        .args(["-i", "a:1"]));
    assert!(
        r.code == 1 && r.stderr.contains("missing.yaml: cannot open"),
        "{}",
        r.stderr
    );
}

#[test]
fn github_actions_outputs_summary_and_annotations() {
    let remote = Remote::new(&[("overlays/staging/kustomization.yaml", STAGING)]);
    let work = remote.clone_as("work", &remote.file_url());
    let out = remote.dir.path().join("github_output");
    let summary = remote.dir.path().join("summary.md");
    let r = run(gantry()
        .current_dir(&work)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &out)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_ACTOR", "octocat")
        .env("GITHUB_ACTOR_ID", "583231")
        .args([
            "bump",
            "-f",
            "overlays/staging/kustomization.yaml",
            "-i",
            "backend=*:1.5.0",
            "--commit",
            "--push",
        ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let outputs = fs::read_to_string(&out).unwrap();
    assert!(outputs.contains("changed=true\n"), "{outputs}");
    assert!(outputs.contains(&format!("commit={head}\n")), "{outputs}");
    assert!(
        outputs.contains("files=overlays/staging/kustomization.yaml\n"),
        "{outputs}"
    );
    let md = fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| `overlays/staging/kustomization.yaml` | `backend` | `123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:1.4.0` | `123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:1.5.0` |"), "{md}");
    let author = git(
        &remote.bare,
        &["log", "-1", "--format=%an <%ae>|%cn <%ce>", "main"],
    );
    assert_eq!(
        author,
        "octocat <583231+octocat@users.noreply.github.com>|octocat <583231+octocat@users.noreply.github.com>"
    );

    fs::write(
        work.join("overlays/staging/kustomization.yaml"),
        "images: [\n",
    )
    .unwrap();
    let r = run(gantry()
        .current_dir(&work)
        .env("GITHUB_ACTIONS", "true")
        .args([
            "bump",
            "-f",
            "overlays/staging/kustomization.yaml",
            "-i",
            "backend:1",
        ]));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("::error file=overlays/staging/kustomization.yaml,line=2,col=1::"),
        "{}",
        r.stdout
    );
}

#[test]
fn commit_uses_the_template_and_a_second_run_makes_no_commit() {
    let remote = Remote::new(&[("app/kustomization.yaml", STAGING), ("README", "hi\n")]);
    let work = remote.clone_as("work", &remote.file_url());
    let before = git(&work, &["rev-parse", "HEAD"]);
    let args = [
        "bump",
        "-f",
        "app/kustomization.yaml",
        "-i",
        "frontend=*:v3",
        "-i",
        "backend=*:2",
        "--commit",
        "-m",
        "deploy({images}): {title}\n\n{changes}\n",
        "--author-name",
        "Release Bot",
        "--author-email",
        "bot@example.com",
    ];
    let r = run(gantry().current_dir(&work).args(args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let message = git(&work, &["log", "-1", "--format=%B"]);
    assert_eq!(
        message,
        "deploy(backend, frontend): Bump backend, frontend\n\n\
         - app/kustomization.yaml: frontend 123456789012.dkr.ecr.eu-west-1.amazonaws.com/frontend:v2.0.0 → 123456789012.dkr.ecr.eu-west-1.amazonaws.com/frontend:v3\n\
         - app/kustomization.yaml: backend 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:1.4.0 → 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:2"
    );
    assert_eq!(
        git(&work, &["log", "-1", "--format=%an <%ae>"]),
        "Release Bot <bot@example.com>"
    );
    assert_eq!(git(&work, &["rev-parse", "HEAD~1"]), before);
    assert_eq!(
        git(&work, &["status", "--porcelain"]),
        "",
        "working tree and index are clean"
    );
    assert_eq!(
        git(&work, &["diff", "--stat", "HEAD~1"]),
        " app/kustomization.yaml | 4 ++--\n 1 file changed, 2 insertions(+), 2 deletions(-)"
    );

    let head = git(&work, &["rev-parse", "HEAD"]);
    let r = run(gantry().current_dir(&work).args(args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        git(&work, &["rev-parse", "HEAD"]),
        head,
        "no commit when nothing changed"
    );
}
