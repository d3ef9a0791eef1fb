//! README's first command, `examples/quickstart.sh`, run as a newcomer runs
//! it: the image built and pushed to a local registry, reused unchanged,
//! the example app's staging overlay bumped to its digest in a bare
//! GitOps repository, and the canary that commit starts planned from the
//! rendered overlay. Every line it prints comes from a command it ran;
//! the test checks what a user would look at.

use std::process::Command;
use std::time::Instant;

use gantry_tests::{binary, repo};

#[test]
fn the_quickstart_builds_bumps_and_plans_the_canary() {
    let started = Instant::now();
    // The suite's gantry: the quickstart's own build (its `quickstart`
    // profile) is a second build of minutes; the benchmark times it.
    let out = Command::new("bash")
        .arg(repo().join("examples/quickstart.sh"))
        .env("GANTRY", binary("gantry"))
        .env_remove("GITHUB_ACTOR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seconds = started.elapsed().as_secs();
    eprintln!("quickstart: {seconds} s (the gantry build already done)");

    // Built and pushed, then reused.
    assert!(
        stdout.contains("$ gantry image build backend --push"),
        "{stdout}"
    );
    assert!(stderr.contains("reused"), "{stderr}");
    // The pushed commit bumps the staging overlay to the digest.
    assert!(stdout.contains("Author: release-pipeline"), "{stdout}");
    assert!(stdout.contains("+    newTag: \"1.5.0\""), "{stdout}");
    assert!(stdout.contains("+    digest: sha256:"), "{stdout}");
    // The canary it starts, from the rendered overlay.
    for line in [
        "Rollout backend: 2 replicas, 6 steps",
        "setWeight 10",
        "analysis backend-health",
        "error-rate: every 30s, 4 measurement(s)",
        "namespace=\"webapp-staging\"",
        "Worst case from a failing gate's start to all traffic on stable: 30s.",
        "To go further",
        "rollout status backend -n webapp-staging --watch",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
}
