//! Figures for `gantry bump`, printed (no pass/fail):
//! - the editor alone on a kustomization with 200 image entries;
//! - the whole `gantry bump --commit` process on that file;
//! - 16 pipelines racing to push to one branch (file:// and smart HTTP):
//!   wall time and push attempts used.
//!
//! Run: `cargo build --release -p gantry && cargo bench -p gantry-tests`

use std::time::{Duration, Instant};

use gantry::kustomize::editor::{Missing, set_images};
use gantry::kustomize::image_ref::ImageSpec;
use gantry_tests::{HttpGit, Remote, gantry, git, race_pipelines, run};

const FILE: &str = "overlays/prod/kustomization.yaml";

fn kustomization(entries: usize) -> String {
    let mut s = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../base\nimages:\n",
    );
    for i in 0..entries {
        s.push_str(&format!(
            "# service {i}\n- name: svc{i:03}\n  newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/svc{i:03}\n  newTag: \"1.0.{i}\"\n"
        ));
    }
    s
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    format!(
        "median {:.3?}, min {:.3?}, max {:.3?} over {} runs",
        median,
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    )
}

fn editor() {
    let text = kustomization(200);
    let spec = [ImageSpec::parse("svc137=*:2.0.0").unwrap()];
    let samples: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let (out, changes) = set_images(&text, &spec, Missing::Create).unwrap();
            assert_eq!(changes.len(), 1);
            std::hint::black_box(out);
            t.elapsed()
        })
        .collect();
    println!(
        "editor, 1 image in 200 entries ({} KiB): {}",
        text.len() / 1024,
        stats(samples)
    );
}

fn bump_commit() {
    let remote = Remote::new(&[(FILE, &kustomization(200))]);
    let work = remote.clone_as("work", &remote.file_url());
    let samples: Vec<Duration> = (0..30)
        .map(|i| {
            let t = Instant::now();
            let r = run(gantry().current_dir(&work).args([
                "bump",
                "-f",
                FILE,
                "-i",
                &format!("svc137=*:2.0.{i}"),
                "--commit",
            ]));
            let elapsed = t.elapsed();
            assert_eq!(r.code, 0, "{}", r.stderr);
            elapsed
        })
        .collect();
    println!(
        "gantry bump --commit, 1 image in 200 entries (process wall time): {}",
        stats(samples)
    );
}

fn race(label: &str, http: bool) {
    const N: usize = 16;
    let remote = Remote::new(&[(FILE, &kustomization(20))]);
    let server = http.then(|| HttpGit::start(remote.bare.parent().unwrap()));
    let url = server
        .as_ref()
        .map_or_else(|| remote.file_url(), |s| s.url("app.git"));
    let specs: Vec<String> = (0..N).map(|i| format!("svc{i:03}=*:9.9.9")).collect();
    let race = race_pipelines(&remote, &url, FILE, &specs);
    assert_eq!(
        git(&remote.bare, &["rev-list", "--count", "main"]),
        (N + 1).to_string()
    );
    println!(
        "race over {label}: {N} pipelines landed in {:.2?}; push attempts {} in all, at most {} for one pipeline",
        race.wall,
        race.attempts.iter().sum::<usize>(),
        race.attempts.iter().max().unwrap()
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs benches only with --benches.
    editor();
    bump_commit();
    race("file://", false);
    race("smart HTTP", true);
}
