//! The quickstart's cold start: `cargo build -p gantry --profile quickstart`
//! into an empty target directory (the registry's sources already
//! downloaded), as `examples/quickstart.sh` runs it on a fresh checkout.
//! Prints the wall time, the CPU time summed over units, and the units
//! that take longest, from cargo's `--timings` report.
//! `GANTRY_COLD_PROFILE=dev` times the test suite's profile instead.
//!
//! cargo bench -p gantry-tests --bench cold_start

use std::process::Command;
use std::time::Instant;

use gantry_tests::repo;

fn main() {
    let profile = std::env::var("GANTRY_COLD_PROFILE").unwrap_or_else(|_| "quickstart".into());
    let target = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "gantry",
            "--timings",
            "--profile",
            &profile,
        ])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", target.path())
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build failed");
    let wall = started.elapsed().as_secs_f64();

    let report = std::fs::read_to_string(target.path().join("cargo-timings/cargo-timing.html"))
        .expect("cargo's --timings report");
    let mut units = unit_durations(&report);
    units.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cpu: f64 = units.iter().map(|u| u.1).sum();
    println!(
        "cold build of gantry, profile {profile}: {wall:.0} s wall, {cpu:.0} s summed over {} units",
        units.len()
    );
    for (name, seconds) in units.iter().take(12) {
        println!("  {seconds:6.1} s  {name}");
    }
}

/// (crate version, seconds) of each unit, from the report's UNIT_DATA.
fn unit_durations(report: &str) -> Vec<(String, f64)> {
    let start = report.find("const UNIT_DATA = ").expect("UNIT_DATA") + 18;
    let end = start + report[start..].find(";\n").expect("end of UNIT_DATA");
    let data: serde_json::Value = serde_json::from_str(&report[start..end]).unwrap();
    data.as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let name = format!(
                "{} {}{}",
                u["name"].as_str().unwrap_or_default(),
                u["version"].as_str().unwrap_or_default(),
                match u["mode"].as_str() {
                    Some("run-custom-build") => " (build script)",
                    _ => "",
                }
            );
            (name, u["duration"].as_f64().unwrap_or_default())
        })
        .collect()
}
