//! `gantry rollout plan` golden tests: the example application's Rollout as
//! each overlay renders it, and invalid input. Regenerate the expected files
//! after an intended change with `GANTRY_BLESS=1 cargo test -p gantry-tests
//! --test rollout_plan` and review the diff.

use std::io::Write as _;
use std::process::{Command, Stdio};

use gantry_tests::{Run, gantry, kustomize, repo, run, which};

fn rendered(overlay: &str) -> String {
    kustomize(&repo().join("manifests/example/overlays").join(overlay))
}

/// `gantry rollout plan ARGS` with `stdin` piped in.
fn plan(args: &[&str], stdin: &str) -> Run {
    piped(gantry().args(["rollout", "plan"]).args(args), stdin)
}

fn piped(cmd: &mut Command, stdin: &str) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

fn golden(name: &str, actual: &str) {
    gantry_tests::golden(&format!("plan/{name}"), actual);
}

#[test]
fn the_example_rollout_in_each_overlay() {
    for overlay in ["staging", "prod"] {
        let out = plan(&["-f", "-"], &rendered(overlay));
        assert_eq!(out.code, 0, "{}", out.stderr);
        golden(&format!("{overlay}.txt"), &out.stdout);
    }
}

#[test]
fn json_output_carries_the_same_plan() {
    let out = plan(&["-f", "-", "-o", "json"], &rendered("prod"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let plan = &json[0]["plan"];
    assert_eq!(json[0]["rollout"], "backend");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 6);
    assert_eq!(plan["steps"][1]["waitsForPromote"], true);
    assert_eq!(plan["manualPromotions"], 1);
    assert_eq!(plan["gates"][0]["metrics"][0]["name"], "error-rate");
}

#[test]
fn an_unrendered_base_plans_in_the_default_namespace() {
    let base = repo().join("manifests/example/base");
    let rollout = base.join("backend-rollout.yaml");
    let template = base.join("backend-analysis.yaml");
    let out = plan(
        &[
            "-f",
            rollout.to_str().unwrap(),
            "-f",
            template.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(r#"namespace="default""#),
        "as kubectl would apply it: {}",
        out.stdout
    );
}

#[test]
fn templates_from_a_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let base = repo().join("manifests/example/base");
    std::fs::copy(
        base.join("backend-analysis.yaml"),
        scratch.path().join("t.yaml"),
    )
    .unwrap();
    // The base Rollout has no namespace for the template's fieldRef argument.
    let rollout = std::fs::read_to_string(base.join("backend-rollout.yaml"))
        .unwrap()
        .replace(
            "  name: backend\n",
            "  name: backend\n  namespace: team-a\n",
        );
    let out = plan(
        &[
            "-f",
            "-",
            "--analysis-templates",
            scratch.path().to_str().unwrap(),
        ],
        &rollout,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(r#"namespace="team-a""#),
        "{}",
        out.stdout
    );
}

#[test]
fn invalid_input_is_named_with_every_problem() {
    let staging = rendered("staging");
    let bad_spec = staging
        .replace("setWeight: 50", "setWeight: 150")
        .replace("duration: 2m", "duration: soon");
    let out = plan(&["-f", "-"], &bad_spec);
    golden("invalid-spec.txt", &out.stderr);
    assert_eq!(out.code, 1);
    let bad_reference = staging.replace(
        "templateName: backend-health",
        "templateName: backend-healthz",
    );
    let out = plan(&["-f", "-"], &bad_reference);
    golden("missing-template.txt", &out.stderr);
    assert_eq!(out.code, 1);

    let out = plan(
        &["-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no Rollout"), "{}", out.stderr);

    let missing = run(gantry().args(["rollout", "plan", "-f", "/nonexistent.yaml"]));
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("cannot read /nonexistent.yaml"),
        "{}",
        missing.stderr
    );
}

#[test]
fn works_as_a_kubectl_plugin() {
    let kubectl = which("kubectl").expect("kubectl is not installed: run tests/setup");
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        gantry_tests::binary("gantry"),
        bin.path().join("kubectl-gantry"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let help = run(Command::new(&kubectl)
        .env("PATH", &path)
        .args(["gantry", "rollout", "--help"]));
    assert_eq!(help.code, 0, "{}", help.stderr);
    assert!(
        help.stdout.contains("Usage: kubectl gantry rollout"),
        "{}",
        help.stdout
    );

    let out = piped(
        Command::new(&kubectl)
            .env("PATH", &path)
            .args(["gantry", "rollout", "plan", "-f", "-"]),
        &rendered("prod"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    golden("prod.txt", &out.stdout);
}
