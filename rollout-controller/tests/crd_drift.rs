//! The committed CRD YAML must be exactly what the Rust types generate.
//! Regenerate with `GANTRY_WRITE_CRDS=1 cargo test -p rollout-controller --test crd_drift`.

use kube::CustomResourceExt;
use rollout_controller::types::Rollout;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/crds/rollouts.gantry.dev.yaml"
);

#[test]
fn committed_crd_matches_the_types() {
    let generated = format!(
        "# Generated from rollout-controller/src/types.rs; do not edit.\n{}",
        serde_yaml::to_string(&Rollout::crd()).unwrap()
    );
    if std::env::var_os("GANTRY_WRITE_CRDS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
        std::fs::write(PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "{PATH} is out of date with the Rust types: run\n  GANTRY_WRITE_CRDS=1 cargo test -p rollout-controller --test crd_drift"
    );
}
