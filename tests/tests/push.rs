//! `gantry bump --commit --push` against real remotes: bare repositories
//! over file:// and over smart HTTP (`git http-backend` behind lighttpd,
//! basic auth), including races between many pipelines.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use gantry_tests::{HTTP_PASSWORD, HTTP_USER, HttpGit, Remote, gantry, git, race_pipelines, run};

const KUSTOMIZATION: &str =
    "# overlay\nresources:\n- ../../base\nimages:\n- name: backend\n  newTag: v1\n";
const FILE: &str = "overlays/staging/kustomization.yaml";

fn bump(work: &Path, image: &str, extra: &[&str]) -> Command {
    let mut cmd = gantry();
    cmd.current_dir(work)
        .env("GANTRY_GIT_USERNAME", HTTP_USER)
        .env("GANTRY_GIT_TOKEN", HTTP_PASSWORD)
        .args(["bump", "-f", FILE, "-i", image, "--commit", "--push"])
        .args(extra);
    cmd
}

#[test]
fn push_over_file_url_updates_remote_and_local() {
    let remote = Remote::new(&[(FILE, KUSTOMIZATION)]);
    let work = remote.clone_as("work", &remote.file_url());
    let r = run(&mut bump(&work, "backend:v2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("pushed"), "{}", r.stdout);
    assert_eq!(remote.show(FILE), KUSTOMIZATION.replace("v1", "v2"));
    assert_eq!(
        git(&work, &["rev-parse", "HEAD"]),
        git(&remote.bare, &["rev-parse", "main"])
    );
    assert_eq!(
        git(&work, &["rev-parse", "origin/main"]),
        git(&remote.bare, &["rev-parse", "main"])
    );
    assert_eq!(git(&work, &["status", "--porcelain"]), "");
}

#[test]
fn push_over_smart_http_with_basic_auth_and_a_wrong_token() {
    let remote = Remote::new(&[(FILE, KUSTOMIZATION)]);
    let server = HttpGit::start(remote.bare.parent().unwrap());
    let work = remote.clone_as("work", &server.url("app.git"));
    let r = run(&mut bump(&work, "backend:v2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(remote.show(FILE), KUSTOMIZATION.replace("v1", "v2"));

    let before = git(&work, &["rev-parse", "HEAD"]);
    let wrong = "wrong-token-do-not-print";
    let r = run(bump(&work, "backend:v3", &[]).env("GANTRY_GIT_TOKEN", wrong));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("authentication failed"), "{}", r.stderr);
    assert!(
        !r.stderr.contains(wrong) && !r.stdout.contains(wrong),
        "the token was printed"
    );
    assert_eq!(
        git(&work, &["rev-parse", "HEAD"]),
        before,
        "nothing committed locally on failure"
    );
    assert_eq!(
        git(&work, &["status", "--porcelain"]),
        "",
        "working tree untouched on failure"
    );
    assert_eq!(remote.show(FILE), KUSTOMIZATION.replace("v1", "v2"));
}

#[test]
fn a_hook_rejection_is_reported_not_retried() {
    let remote = Remote::new(&[(FILE, KUSTOMIZATION)]);
    let hook = remote.bare.join("hooks/pre-receive");
    fs::write(&hook, "#!/bin/sh\necho 'main is protected' >&2\nexit 1\n").unwrap();
    fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let server = HttpGit::start(remote.bare.parent().unwrap());
    let work = remote.clone_as("work", &server.url("app.git"));
    let r = run(&mut bump(&work, "backend:v2", &[]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("push to origin/main was rejected"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("lost a race"),
        "a hook rejection is not a race: {}",
        r.stderr
    );
    assert_eq!(git(&work, &["status", "--porcelain"]), "");
    assert_eq!(remote.show(FILE), KUSTOMIZATION);
}

#[test]
fn a_stale_clone_reapplies_the_bump_to_the_fresh_file() {
    let remote = Remote::new(&[(FILE, KUSTOMIZATION)]);
    let stale = remote.clone_as("stale", &remote.file_url());
    // Meanwhile another pipeline bumps backend and someone edits the file.
    let other = remote.clone_as("other", &remote.file_url());
    fs::write(
        other.join(FILE),
        KUSTOMIZATION
            .replace("# overlay", "# overlay (edited)")
            .replace("v1", "v5"),
    )
    .unwrap();
    git(&other, &["commit", "-qam", "edit"]);
    git(&other, &["push", "-q", "origin", "main"]);

    let r = run(&mut bump(&stale, "frontend:f2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("after 2 attempts"), "{}", r.stdout);
    let expected = "# overlay (edited)\nresources:\n- ../../base\nimages:\n- name: backend\n  newTag: v5\n- name: frontend\n  newTag: f2\n";
    assert_eq!(
        remote.show(FILE),
        expected,
        "the bump was applied to the new file, not as a stale patch"
    );
    assert_eq!(fs::read_to_string(stale.join(FILE)).unwrap(), expected);
    assert_eq!(git(&stale, &["status", "--porcelain"]), "");

    // The same bump again from another stale clone: upstream already has it.
    let stale2 = remote.clone_as("stale2", &remote.file_url());
    git(&stale2, &["reset", "-q", "--hard", "HEAD~2"]);
    let tip = git(&remote.bare, &["rev-parse", "main"]);
    let r = run(&mut bump(&stale2, "frontend:f2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("already carries this bump"),
        "{}",
        r.stdout
    );
    assert_eq!(
        git(&remote.bare, &["rev-parse", "main"]),
        tip,
        "no duplicate commit"
    );
    assert_eq!(git(&stale2, &["rev-parse", "HEAD"]), tip);
}

#[test]
fn shallow_clones_like_actions_checkout_push_and_race() {
    let remote = Remote::new(&[(FILE, KUSTOMIZATION), ("README", "1\n")]);
    let other = remote.clone_as("other", &remote.file_url());
    fs::write(other.join("README"), "2\n").unwrap();
    git(&other, &["commit", "-qam", "second"]);
    git(&other, &["push", "-q", "origin", "main"]);
    let server = HttpGit::start(remote.bare.parent().unwrap());
    let shallow = remote.shallow_clone_as("shallow", &server.url("app.git"));
    assert_eq!(
        git(&shallow, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    // Upstream moves on after the checkout: the push must fetch into the shallow clone.
    fs::write(other.join("README"), "3\n").unwrap();
    git(&other, &["commit", "-qam", "third"]);
    git(&other, &["push", "-q", "origin", "main"]);

    let r = run(&mut bump(&shallow, "backend:v2", &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("after 2 attempts"), "{}", r.stdout);
    assert_eq!(remote.show(FILE), KUSTOMIZATION.replace("v1", "v2"));
    assert_eq!(remote.show("README"), "3\n");
    assert_eq!(
        fs::read_to_string(shallow.join("README")).unwrap(),
        "3\n",
        "upstream change checked out"
    );
    assert_eq!(git(&shallow, &["status", "--porcelain"]), "");
}

/// 16 pipelines at once, each bumping a different image on one branch:
/// every bump lands exactly once and history stays linear.
fn race(http: bool) {
    const N: usize = 16;
    let remote = Remote::new(&[(FILE, KUSTOMIZATION)]);
    let server = http.then(|| HttpGit::start(remote.bare.parent().unwrap()));
    let url = server
        .as_ref()
        .map_or_else(|| remote.file_url(), |s| s.url("app.git"));
    let specs: Vec<String> = (0..N).map(|i| format!("img{i:02}:v{i}")).collect();
    let race = race_pipelines(&remote, &url, FILE, &specs);

    // Linear: every commit has exactly one parent; N commits on top of the seed.
    let log = remote.log();
    let commits: Vec<&str> = log.lines().collect();
    assert_eq!(commits.len(), N + 1, "{log}");
    for line in &commits[..N] {
        let parents = line.split('|').next().unwrap().split(' ').count() - 1;
        assert_eq!(parents, 1, "merge or root in {line}");
    }
    // Each bump exactly once, each in its own commit.
    let mut titles: BTreeMap<String, usize> = BTreeMap::new();
    for line in &commits[..N] {
        *titles
            .entry(line.split('|').nth(1).unwrap().to_string())
            .or_default() += 1;
    }
    for i in 0..N {
        assert_eq!(
            titles.get(&format!("Bump img{i:02} to v{i}")),
            Some(&1),
            "{titles:?}"
        );
    }
    let file = remote.show(FILE);
    for i in 0..N {
        let entry = format!("- name: img{i:02}\n  newTag: v{i}\n");
        assert_eq!(file.matches(&entry).count(), 1, "{file}");
    }
    println!(
        "race: {N} pipelines, {} push attempts in all",
        race.attempts.iter().sum::<usize>()
    );
}

#[test]
fn sixteen_pipelines_race_over_file_urls() {
    race(false);
}

#[test]
fn sixteen_pipelines_race_over_smart_http() {
    race(true);
}
