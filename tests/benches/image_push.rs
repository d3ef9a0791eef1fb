//! Figures for `gantry image push`, printed (no pass/fail), all in one run:
//! - the same ~1 GiB, 8-layer OCI layout pushed to a fresh local registry by
//!   `gantry image push` and by `skopeo copy`: wall time of each and the ratio;
//! - gantry re-pushing the unchanged image: time and blob uploads (0);
//! - gantry's peak resident memory during the push.
//!
//! Run: `cargo build --release -p gantry && cargo bench -p gantry-tests --bench image_push`
//! (`GANTRY_BENCH_MIB` changes the image size.)

use std::process::Command;
use std::time::{Duration, Instant};

use gantry_tests::oci::{Layer, LayoutWriter, Registry};
use gantry_tests::{gantry, run};

const LAYERS: u64 = 8;

fn main() {
    let mib: u64 = std::env::var("GANTRY_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().unwrap();
    let mut layout = LayoutWriter::new(dir.path());
    let layers: Vec<Layer> = (0..LAYERS)
        .map(|i| Layer::Random {
            size: mib * 1024 * 1024 / LAYERS,
            seed: 1000 + i,
        })
        .collect();
    let digest = layout.image("bench", &layers);
    let from = format!("oci:{}:bench", dir.path().display());
    println!("image: {LAYERS} layers, {mib} MiB, {digest}");

    // gantry first: it is the only child waited on so far, so the children's
    // peak RSS afterwards is its own.
    let registry = Registry::start(None);
    let to = format!("{}/bench/gantry", registry.host());
    let push = || {
        run(gantry().env("GANTRY_LOG", "warn").args([
            "image",
            "push",
            "--insecure",
            "--from",
            &from,
            "--to",
            &to,
            "--tag",
            "v1",
        ]))
    };
    let (wall, r) = timed(push);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), format!("{to}@{digest}"));
    let peak = peak_child_rss_mib();
    println!(
        "gantry image push, fresh registry: {:.2?} ({:.0} MiB/s), peak RSS {peak:.1} MiB",
        wall,
        mib as f64 / wall.as_secs_f64()
    );

    let uploads = registry.uploads();
    let (rewall, r) = timed(push);
    assert_eq!(r.code, 0, "{}", r.stderr);
    println!(
        "gantry image push, unchanged re-push: {rewall:.2?}, blob uploads {}",
        registry.uploads() - uploads
    );

    let skopeo_registry = Registry::start(None);
    let dest = format!("docker://{}/bench/skopeo:v1", skopeo_registry.host());
    let (swall, status) = timed(|| {
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .arg(format!("oci:{}:bench", dir.path().display()))
            .arg(&dest)
            .status()
            .expect("skopeo is not installed: run tests/setup")
    });
    assert!(status.success());
    assert_eq!(
        skopeo_registry.tag("bench/skopeo", "v1").as_deref(),
        Some(digest.as_str()),
        "same image"
    );
    println!(
        "skopeo copy, fresh registry: {swall:.2?} ({:.0} MiB/s)",
        mib as f64 / swall.as_secs_f64()
    );
    println!(
        "ratio skopeo/gantry: {:.2}x",
        swall.as_secs_f64() / wall.as_secs_f64()
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

fn peak_child_rss_mib() -> f64 {
    // RUSAGE_CHILDREN covers the children already waited for; maxrss is in KiB.
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage(2)");
    usage.max_rss() as f64 / 1024.0
}
