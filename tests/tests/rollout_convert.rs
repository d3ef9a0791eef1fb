//! `gantry rollout convert` on a corpus of Argo Rollouts manifests
//! (`tests/fixtures/argo/`, written for these tests): canary with ALB,
//! analysis with args, background analysis with a dry-run metric,
//! experiments, blueGreen, header routes, dynamicStableScale, a job
//! metric, a ClusterAnalysisTemplate,
//! workloadRef, a basic canary, a rollback window, ping-pong, two
//! Ingresses, and the shape of Argo's getting-started
//! Rollout (no Services named), which is then run to completion on the
//! simulated cluster. Each conversion's output and report are
//! golden files (`GANTRY_BLESS=1` to accept a change); what converts
//! cleanly is then planned by `gantry rollout plan`, which validates it as
//! the controller would.

use std::path::PathBuf;

use gantry_tests::{Run, gantry, repo, run};
use rollout_core::simulate::Simulation;
use rollout_core::types::{Phase, Rollout};

const CORPUS: [(&str, i32); 14] = [
    ("canary-alb", 0),
    ("background-analysis", 0),
    ("cluster-template", 0),
    ("workload-ref", 0),
    ("basic-canary", 0),
    ("getting-started", 0),
    ("rollback-window", 0),
    ("ping-pong", 0),
    ("two-ingresses", 0),
    ("header-routes", 0),
    ("dynamic-stable-scale", 0),
    ("job-analysis", 0),
    ("experiment", 2),
    ("bluegreen", 2),
];

fn fixture(name: &str) -> PathBuf {
    repo()
        .join("tests/fixtures/argo")
        .join(format!("{name}.yaml"))
}

fn convert(name: &str, extra: &[&str]) -> Run {
    let path = fixture(name);
    // Relative, so the report's paths do not depend on the checkout.
    let relative = path.strip_prefix(repo()).unwrap();
    run(gantry()
        .current_dir(repo())
        .args(["rollout", "convert", "-f"])
        .arg(relative)
        .args(extra))
}

#[test]
fn each_manifest_converts_or_names_what_does_not_carry_over() {
    for (name, code) in CORPUS {
        let out = convert(name, &[]);
        assert_eq!(out.code, code, "{name}: {}", out.stderr);
        gantry_tests::golden(&format!("convert/{name}.report"), &out.stderr);
        if code == 0 {
            gantry_tests::golden(&format!("convert/{name}.yaml"), &out.stdout);
        } else {
            assert_eq!(out.stdout, "", "{name}: nothing half-converted is printed");
            assert!(
                out.stderr.contains("unsupported: "),
                "{name}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn only_what_must_change_changes() {
    for (name, code) in CORPUS {
        let out = convert(name, &["--allow-unsupported"]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let input = std::fs::read_to_string(fixture(name)).unwrap();
        let (before, after): (Vec<&str>, Vec<&str>) =
            (input.lines().collect(), out.stdout.lines().collect());
        assert_eq!(before.len(), after.len(), "{name}: lines are kept");
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                let allowed = [
                    (
                        "apiVersion: argoproj.io/v1alpha1",
                        "apiVersion: gantry.dev/v1alpha1",
                    ),
                    ("kind: ClusterAnalysisTemplate", "kind: AnalysisTemplate"),
                    ("clusterScope: true", "clusterScope: false"),
                ];
                assert!(
                    allowed.iter().any(|(from, to)| b.replace(from, to) == *a),
                    "{name}: {b:?} became {a:?}"
                );
            }
        }
        assert!(!out.stdout.contains("argoproj.io"), "{name}");
        if code == 0 {
            assert!(
                out.stderr.contains(", 0 unsupported field(s)"),
                "{name}: {}",
                out.stderr
            );
        }
    }
}

/// `gantry rollout plan` on the converted `name`.
fn plan_converted(name: &str) -> Run {
    let converted = convert(name, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("converted.yaml");
    std::fs::write(&file, &converted.stdout).unwrap();
    run(gantry().args(["rollout", "plan", "-f"]).arg(&file))
}

#[test]
fn converted_manifests_plan_as_the_controller_would_run_them() {
    for name in [
        "canary-alb",
        "background-analysis",
        "cluster-template",
        "basic-canary",
        "getting-started",
        "rollback-window",
        "ping-pong",
        "two-ingresses",
        "header-routes",
        "dynamic-stable-scale",
        "job-analysis",
    ] {
        let plan = plan_converted(name);
        assert_eq!(plan.code, 0, "{name}: {}", plan.stderr);
        assert!(
            plan.stdout.contains("Minimum duration"),
            "{name}: {}",
            plan.stdout
        );
    }
    // The migration path keeps its Deployment: the plan says what happens to it.
    let plan = plan_converted("workload-ref");
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("Pod template from Deployment orders (workloadRef)"),
        "{}",
        plan.stdout
    );
}

#[test]
fn the_getting_started_rollout_runs_to_completion_once_converted() {
    let converted = convert("getting-started", &[]);
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    let rollout: Rollout = serde_yaml::from_str(&converted.stdout).unwrap();
    let mut sim = Simulation::new(rollout);
    sim.settle().expect("the first deploy settles");
    assert_eq!(sim.phase(), Some(Phase::Healthy));
    let blue = sim.hash();
    let containers = &mut sim.rollout.spec.template.spec.as_mut().unwrap().containers;
    containers[0].image = Some("argoproj/rollouts-demo:yellow".into());
    let yellow = sim.hash();
    let mut shares = Vec::new();
    // The one `pause: {}` is promoted as `gantry rollout promote` does.
    sim.run_to_healthy(100, |sim, _| {
        assert!(sim.violations.is_empty(), "{:?}", sim.violations);
        let share = (sim.replicas(&yellow), sim.replicas(&blue));
        if shares.last() != Some(&share) {
            shares.push(share);
        }
    });
    let status = sim.status().unwrap();
    assert_eq!(status.phase, Some(Phase::Healthy), "{status:#?}");
    assert_eq!(status.stable_rs.as_deref(), Some(yellow.as_str()));
    assert_eq!(status.current_step_index, Some(8));
    // Each setWeight as a share of the 5 pods, then all of them.
    for want in [(1, 4), (2, 3), (3, 2), (4, 1), (5, 0)] {
        assert!(shares.contains(&want), "{want:?} never held: {shares:?}");
    }
}

#[test]
fn bad_input_is_named_with_its_file_and_document() {
    let out = run(gantry().args(["rollout", "convert", "-f", "/nonexistent.yaml"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot read /nonexistent.yaml"),
        "{}",
        out.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nspec: [\n",
    )
    .unwrap();
    let out = run(gantry().args(["rollout", "convert", "-f"]).arg(&bad));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("(document 1): not YAML"),
        "{}",
        out.stderr
    );
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(&wrong, "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\nspec: {replicas: many}\n").unwrap();
    let out = run(gantry().args(["rollout", "convert", "-f"]).arg(&wrong));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("(document 1) Rollout x: not a valid Rollout once converted"),
        "{}",
        out.stderr
    );
}
