//! Committed files generated from the Rust code must be exactly what it
//! generates: the CRDs from the types, Argo CD's customizations from
//! `rollout_core::argocd`. Regenerate with
//! `GANTRY_WRITE_GENERATED=1 cargo test -p rollout-core --test generated_drift`.

use kube::CustomResourceExt;
use rollout_core::argocd;
use rollout_core::types::{AnalysisTemplate, Rollout};
use serde::Serialize;

/// `object` as YAML under `manifests/<file>`, headed by where it comes from.
fn check(file: &str, source: &str, object: impl Serialize) {
    let path = format!("{}/../../manifests/{file}", env!("CARGO_MANIFEST_DIR"));
    let generated = format!(
        "# Generated from {source}; do not edit.\n{}",
        serde_yaml::to_string(&object).unwrap()
    );
    if std::env::var_os("GANTRY_WRITE_GENERATED").is_some() {
        std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is out of date with {source}: run\n  GANTRY_WRITE_GENERATED=1 cargo test -p rollout-core --test generated_drift"
    );
}

const TYPES: &str = "rollout-controller/core/src/types.rs";
const ARGOCD: &str = "rollout-controller/core/src/argocd";

#[test]
fn committed_rollout_crd_matches_the_types() {
    check(
        "controller/crds/rollouts.gantry.dev.yaml",
        TYPES,
        Rollout::crd(),
    );
}

#[test]
fn committed_analysis_template_crd_matches_the_types() {
    check(
        "controller/crds/analysistemplates.gantry.dev.yaml",
        TYPES,
        AnalysisTemplate::crd(),
    );
}

#[test]
fn committed_argocd_config_map_matches_the_generator() {
    check("argocd/argocd-cm.yaml", ARGOCD, argocd::config_map());
}

#[test]
fn committed_argocd_helm_values_match_the_generator() {
    check("argocd/helm-values.yaml", ARGOCD, argocd::helm_values());
}
