//! The committed CRD YAML must be exactly what the Rust types generate.
//! Regenerate with `GANTRY_WRITE_CRDS=1 cargo test -p rollout-core --test crd_drift`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use rollout_core::types::{AnalysisTemplate, Rollout};

fn check(file: &str, crd: CustomResourceDefinition) {
    let path = format!(
        "{}/../../manifests/controller/crds/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let generated = format!(
        "# Generated from rollout-controller/core/src/types.rs; do not edit.\n{}",
        serde_yaml::to_string(&crd).unwrap()
    );
    if std::env::var_os("GANTRY_WRITE_CRDS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is out of date with the Rust types: run\n  GANTRY_WRITE_CRDS=1 cargo test -p rollout-core --test crd_drift"
    );
}

#[test]
fn committed_rollout_crd_matches_the_types() {
    check("rollouts.gantry.dev.yaml", Rollout::crd());
}

#[test]
fn committed_analysis_template_crd_matches_the_types() {
    check("analysistemplates.gantry.dev.yaml", AnalysisTemplate::crd());
}
