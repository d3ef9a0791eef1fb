//! The GitHub Actions files parse, reference steps, local actions and paths
//! that exist, and call only gantry commands and flags the built binary has
//! (checked against `gantry <subcommand> --help`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gantry_tests::{gantry, repo, run};
use serde_yaml::Value;

const ACTION: &str = "./.github/actions/gantry";

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workflows() -> Vec<(String, Value)> {
    let dir = repo().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                load(&p),
            )
        })
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Every step of every job: (workflow, job, step).
fn steps(workflows: &[(String, Value)]) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (file, wf) in workflows {
        for (job, body) in wf["jobs"].as_mapping().unwrap() {
            for step in body["steps"].as_sequence().unwrap() {
                all.push((file.clone(), str_of(job).to_string(), step.clone()));
            }
        }
    }
    all
}

#[test]
fn the_workflows_the_issue_names_exist_and_parse() {
    let wfs = workflows();
    let names: BTreeSet<&str> = wfs.iter().map(|(f, _)| f.as_str()).collect();
    for expected in ["ci.yml", "release.yml", "promote.yml"] {
        assert!(names.contains(expected), "{expected} missing");
    }
    for (file, wf) in &wfs {
        assert!(wf["name"].is_string(), "{file}: name");
        // serde_yaml reads the `on` key as a string (YAML 1.2), not `true`.
        assert!(!wf["on"].is_null(), "{file}: on");
        for (job, body) in wf["jobs"].as_mapping().unwrap() {
            assert!(body["runs-on"].is_string(), "{file}: {job:?} runs-on");
            assert!(body["steps"].is_sequence(), "{file}: {job:?} steps");
        }
    }
    let (_, release) = wfs.iter().find(|(f, _)| f == "release.yml").unwrap();
    assert_eq!(release["permissions"]["id-token"], "write", "OIDC for AWS");
    let (_, promote) = wfs.iter().find(|(f, _)| f == "promote.yml").unwrap();
    assert!(promote["on"]["workflow_dispatch"].is_mapping());
}

#[test]
fn steps_reference_existing_actions_steps_and_outputs() {
    let action = load(&repo().join(".github/actions/gantry/action.yml"));
    let action_outputs: BTreeSet<&str> = action["outputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(str_of)
        .collect();
    for (file, wf) in workflows() {
        for (job, body) in wf["jobs"].as_mapping().unwrap() {
            let steps = body["steps"].as_sequence().unwrap();
            let ids: BTreeMap<&str, &Value> = steps
                .iter()
                .filter_map(|s| Some((s["id"].as_str()?, s)))
                .collect();
            for step in steps {
                let uses = str_of(&step["uses"]);
                if let Some(local) = uses.strip_prefix("./") {
                    assert!(
                        repo().join(local).join("action.yml").is_file(),
                        "{file}: {local} has no action.yml"
                    );
                }
                let text = serde_yaml::to_string(step).unwrap();
                for (id, output) in step_output_refs(&text) {
                    let source = ids
                        .get(id.as_str())
                        .unwrap_or_else(|| panic!("{file}: {job:?} has no step {id:?}"));
                    if str_of(&source["uses"]) == ACTION {
                        assert!(
                            action_outputs.contains(output.as_str()),
                            "{file}: the gantry action has no output {output:?}"
                        );
                    }
                }
            }
        }
    }
    // What `gantry bump` really writes to GITHUB_OUTPUT is declared.
    let scratch = tempfile::tempdir().unwrap();
    let kustomization = scratch.path().join("kustomization.yaml");
    std::fs::write(
        &kustomization,
        "images:\n  - name: app\n    newTag: \"1\"\n",
    )
    .unwrap();
    let outputs = scratch.path().join("out");
    let bumped = run(gantry()
        .env("GITHUB_OUTPUT", &outputs)
        .arg("bump")
        .arg("-f")
        .arg(&kustomization)
        .args(["-i", "app:2"]));
    assert_eq!(bumped.code, 0, "{}", bumped.stderr);
    let written = std::fs::read_to_string(&outputs).unwrap();
    for line in written.lines() {
        let key = line.split(['=', '<']).next().unwrap();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase()) {
            assert!(
                action_outputs.contains(key),
                "the action does not expose {key:?}"
            );
        }
    }
}

/// `steps.<id>.outputs.<name>` references in a step's text.
fn step_output_refs(text: &str) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    for (i, _) in text.match_indices("steps.") {
        let rest = &text[i + "steps.".len()..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        if let [id, "outputs", name, ..] = token.split('.').collect::<Vec<_>>()[..] {
            refs.push((id.to_string(), name.to_string()));
        }
    }
    refs
}

// ---------------------------------------------------------------------------
// gantry invocations

/// The command lines given to gantry: `gantry …` (or `path/to/gantry …`) in
/// `run:` scripts, and the gantry action's `args`.
fn invocations() -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for (file, _, step) in steps(&workflows()) {
        if str_of(&step["uses"]) == ACTION {
            let args = str_of(&step["with"]["args"]);
            if !args.is_empty() {
                found.push((file.clone(), words(args)));
            }
        }
        let script = str_of(&step["run"]).replace("\\\n", " ");
        for line in script.lines() {
            let tokens = words(line);
            for (i, t) in tokens.iter().enumerate() {
                if t == "gantry" || t.ends_with("/gantry") {
                    let args: Vec<String> = tokens[i + 1..]
                        .iter()
                        .take_while(|t| !matches!(t.as_str(), "|" | "||" | "&&" | ";" | ")"))
                        .cloned()
                        .collect();
                    found.push((file.clone(), args));
                }
            }
        }
    }
    found
}

/// Shell-like words: whitespace-separated, quotes removed (enough for
/// reading command names and flags).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

fn help(path: &[String]) -> String {
    let out = run(gantry().args(path).arg("--help"));
    assert_eq!(
        out.code,
        0,
        "gantry {} --help: {}",
        path.join(" "),
        out.stderr
    );
    out.stdout
}

/// The subcommand names listed under `Commands:` in a help text.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// Whether a help text documents `flag` (`--commit`, `-f`).
fn lists_flag(help: &str, flag: &str) -> bool {
    [" ", ",", "\n", "="]
        .iter()
        .any(|after| help.contains(&format!("{flag}{after}")))
}

#[test]
fn workflows_call_only_commands_and_flags_gantry_has() {
    let calls = invocations();
    let mut seen = BTreeSet::new();
    for (file, args) in &calls {
        let mut path: Vec<String> = Vec::new();
        let mut text = help(&path);
        for word in args {
            if subcommands(&text).contains(word) {
                path.push(word.clone());
                text = help(&path);
            } else if !word.starts_with('-') {
                break;
            }
        }
        for word in args {
            let Some(flag) = word.strip_prefix('-') else {
                continue;
            };
            let flag = format!("-{}", flag.split('=').next().unwrap());
            assert!(
                lists_flag(&text, &flag),
                "{file}: `gantry {} …` uses {flag}, which `gantry {} --help` does not list",
                path.join(" "),
                path.join(" ")
            );
        }
        seen.insert(path.join(" "));
    }
    // The pipeline's steps, at least: build images, bump the overlay.
    for expected in ["image build", "bump"] {
        assert!(
            seen.contains(expected),
            "no workflow runs `gantry {expected}`: {seen:?}"
        );
    }
}

#[test]
fn the_flag_check_catches_a_misspelled_flag() {
    let text = help(&["bump".to_string()]);
    assert!(lists_flag(&text, "--commit") && lists_flag(&text, "-f"));
    assert!(!lists_flag(&text, "--comit") && !lists_flag(&text, "--com"));
    assert!(subcommands(&help(&[])).contains("image"));
    assert!(subcommands(&help(&["image".to_string()])).contains("build"));
}

/// A `run:` script as the runner hands it to bash: expressions substituted.
fn substituted(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed ${{") + start + 2;
        out.push_str("EXPR");
        rest = &rest[end..];
    }
    out + rest
}

#[test]
fn every_script_is_valid_bash() {
    let mut scripts: Vec<(String, String)> = steps(&workflows())
        .into_iter()
        .filter_map(|(file, job, step)| {
            let run = step["run"].as_str()?;
            Some((format!("{file}: {job}"), substituted(run)))
        })
        .collect();
    let action = load(&repo().join(".github/actions/gantry/action.yml"));
    for step in action["runs"]["steps"].as_sequence().unwrap() {
        scripts.push(("action.yml".into(), substituted(str_of(&step["run"]))));
    }
    let install = repo().join(".github/actions/gantry/install.sh");
    scripts.push((
        "install.sh".into(),
        std::fs::read_to_string(install).unwrap(),
    ));
    assert!(scripts.len() > 10);
    for (what, script) in scripts {
        let checked = run(std::process::Command::new("bash").args(["-n", "-c", &script]));
        assert_eq!(checked.code, 0, "{what}: {}\n{script}", checked.stderr);
    }
    let broken = run(std::process::Command::new("bash").args(["-n", "-c", "if true; then echo"]));
    assert_ne!(broken.code, 0, "bash -n catches a syntax error");
}
