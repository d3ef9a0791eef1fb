//! The documentation is checked like code: README.md and the book under
//! `docs/` (an mdBook). Every page is in the book's SUMMARY and every
//! relative link lands on a file and heading; each YAML example parses,
//! each Rollout in them passes `gantry rollout plan` (with the
//! AnalysisTemplates the examples define); each `gantry …` command line —
//! in shell blocks, `$ gantry` lines of output blocks, workflow `run:`
//! scripts and the composite action's `args:` — parses with the CLI's own
//! argument parser; and the book builds with mdbook.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use gantry::commands::Cli;
use gantry_tests::{gantry, repo, run, which};
use serde::Deserialize as _;
use serde_yaml::Value;

/// A fenced code block: where it starts, its language, its text (the
/// fence's indentation removed).
struct Block {
    at: String,
    lang: String,
    text: String,
}

/// README.md and every page of the book.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    for entry in walkdir::WalkDir::new(repo().join("docs/src")) {
        let path = entry.unwrap().into_path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

fn name(page: &Path) -> String {
    page.strip_prefix(repo())
        .unwrap_or(page)
        .display()
        .to_string()
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, String, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((n + 1, indent, lang.trim().to_string(), vec![])),
            (Some(_), Some("")) => {
                let (start, indent, lang, lines) = open.take().unwrap();
                let text = lines
                    .iter()
                    .map(|l| l.get(indent.min(l.len() - l.trim_start().len())..).unwrap())
                    .collect::<Vec<_>>()
                    .join("\n");
                blocks.push(Block {
                    at: format!("{}:{start}", name(page)),
                    lang,
                    text,
                });
            }
            (Some((_, _, _, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    assert!(
        open.is_none(),
        "{}: a code block is never closed",
        name(page)
    );
    blocks
}

fn all_blocks() -> Vec<Block> {
    pages().iter().flat_map(|p| blocks(p)).collect()
}

fn is_shell(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "shell" | "console")
}

fn yaml_documents(block: &Block) -> Result<Vec<Value>, String> {
    serde_yaml::Deserializer::from_str(&block.text)
        .map(|doc| Value::deserialize(doc).map_err(|e| format!("{}: {e}", block.at)))
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

#[test]
fn every_yaml_example_parses_and_every_rollout_plans() {
    let mut failures = Vec::new();
    let (mut rollouts, mut templates) = (Vec::new(), Vec::new());
    for block in all_blocks()
        .iter()
        .filter(|b| matches!(b.lang.as_str(), "yaml" | "yml"))
    {
        match yaml_documents(block) {
            Err(e) => failures.push(e),
            Ok(docs) => {
                for doc in docs.into_iter().filter(|d| d["apiVersion"].is_string()) {
                    match kind(&doc) {
                        "Rollout" => rollouts.push((block.at.clone(), doc)),
                        "AnalysisTemplate" | "ClusterAnalysisTemplate" => templates.push(doc),
                        _ => {}
                    }
                }
            }
        }
    }
    assert!(!rollouts.is_empty() && !templates.is_empty());
    // A template is checked by planning a Rollout that uses it.
    for template in &templates {
        let name = template["metadata"]["name"].as_str().unwrap_or_default();
        let used = rollouts.iter().any(|(_, r)| {
            serde_yaml::to_string(r)
                .unwrap()
                .contains(&format!("templateName: {name}"))
        });
        if !used {
            failures.push(format!(
                "AnalysisTemplate {name}: no Rollout example uses it, so no plan checks it"
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (at, rollout) in &rollouts {
        let file = dir.path().join("rollout.yaml");
        let stream: Vec<String> = std::iter::once(rollout)
            .chain(&templates)
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect();
        std::fs::write(&file, stream.join("---\n")).unwrap();
        let r = run(gantry().args(["rollout", "plan", "-f"]).arg(&file));
        if r.code != 0 {
            failures.push(format!("{at}: gantry rollout plan: {}", r.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What a runner or a shell would put in place of the expressions the
/// examples use, so the CLI's value parsers see real values. An expression
/// not here is left as it is and fails to parse: add what it stands for.
const SAMPLES: [(&str, &str); 2] = [
    (
        "${{ steps.backend.outputs.image }}",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/backend@sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
    ),
    ("${GITHUB_SHA::12}", "4f1e8c2a9b3d"),
];

/// Shell text as a shell reads it: continuation lines joined, then each
/// line's commands (split at `|`, `&&`, `||`, `;`), redirections dropped.
fn commands(script: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = Vec::new();
    let script = SAMPLES
        .iter()
        .fold(script.replace("\\\n", " "), |s, (from, to)| {
            s.replace(from, to)
        });
    for line in script.lines() {
        let line = line.trim_start().strip_prefix("$ ").unwrap_or(line);
        let words = shlex::split(line).ok_or_else(|| format!("unbalanced quotes in `{line}`"))?;
        for command in words.split(|w| matches!(w.as_str(), "|" | "||" | "&&" | ";")) {
            let end = command
                .iter()
                .position(|w| w.starts_with('>') || w.starts_with('<') || w.starts_with("2>"))
                .unwrap_or(command.len());
            commands.push(command[..end].to_vec());
        }
    }
    Ok(commands)
}

/// Every `gantry …` command the docs show, with where it is.
fn gantry_lines() -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    for block in all_blocks() {
        if is_shell(&block.lang) {
            scripts.push((block.at.clone(), block.text.clone()));
        } else if matches!(block.lang.as_str(), "yaml" | "yml") {
            for doc in yaml_documents(&block).unwrap_or_default() {
                workflow_scripts(&doc, &block.at, &mut scripts);
            }
        } else {
            // Output blocks: the commands they show as typed.
            for line in block.text.lines().filter(|l| l.starts_with("$ gantry ")) {
                scripts.push((block.at.clone(), line.to_string()));
            }
        }
    }
    scripts
}

/// Workflow steps' `run:` scripts, and the composite action's `args:`.
fn workflow_scripts(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Sequence(items) => items.iter().for_each(|v| workflow_scripts(v, at, out)),
        Value::Mapping(map) => {
            if let Some(script) = map.get("run").and_then(Value::as_str) {
                out.push((at.to_string(), script.to_string()));
            }
            let action = map.get("uses").and_then(Value::as_str).unwrap_or_default();
            if action.contains("actions/gantry") {
                if let Some(args) = value["with"]["args"].as_str() {
                    out.push((at.to_string(), format!("gantry {args}")));
                }
            }
            map.values().for_each(|v| workflow_scripts(v, at, out));
        }
        _ => {}
    }
}

#[test]
fn every_gantry_command_line_parses() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (at, script) in gantry_lines() {
        let commands = match commands(&script) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{at}: {e}"));
                continue;
            }
        };
        for words in commands {
            let words = match words.as_slice() {
                [kubectl, plugin, rest @ ..] if kubectl == "kubectl" && plugin == "gantry" => {
                    std::iter::once("gantry".to_string())
                        .chain(rest.iter().cloned())
                        .collect()
                }
                [first, ..] if first == "gantry" => words,
                _ => continue,
            };
            checked += 1;
            if let Err(e) = Cli::try_parse_from(&words) {
                use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
                if !matches!(e.kind(), DisplayHelp | DisplayVersion) {
                    let e = e.render().to_string();
                    let first = e.lines().next().unwrap_or_default();
                    failures.push(format!("{at}: `{}`: {first}", words.join(" ")));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} gantry command lines found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// mdBook's heading ids: lower case, spaces to `-`, other punctuation gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A page's lines outside code blocks (fence lines left out).
fn prose(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            let fence = l.trim_start().starts_with("```");
            fenced ^= fence;
            !fenced && !fence
        })
        .map(str::to_owned)
        .collect()
}

fn anchors(page: &Path) -> BTreeSet<String> {
    prose(page)
        .iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// `](target)` links of a page, outside code blocks.
fn links(page: &Path) -> Vec<String> {
    let mut links = Vec::new();
    for line in prose(page) {
        for (i, _) in line.match_indices("](") {
            if let Some(end) = line[i + 2..].find(')') {
                links.push(line[i + 2..i + 2 + end].to_string());
            }
        }
    }
    links
}

#[test]
fn the_summary_lists_every_page_and_every_link_lands() {
    let src = repo().join("docs/src");
    let summary = src.join("SUMMARY.md");
    let listed: BTreeSet<PathBuf> = links(&summary).iter().map(|l| src.join(l)).collect();
    let mut failures = Vec::new();
    for page in pages() {
        let in_book = page.starts_with(&src) && page != summary;
        if in_book && !listed.contains(&page) {
            failures.push(format!("{} is not in SUMMARY.md", name(&page)));
        }
        for link in links(&page) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !target.exists() {
                failures.push(format!("{}: link to {link}: no such file", name(&page)));
            } else if !fragment.is_empty() && !anchors(&target).contains(fragment) {
                failures.push(format!("{}: link to {link}: no such heading", name(&page)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_book_builds() {
    let mdbook = which("mdbook")
        .or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME")?);
            Some(home.join(".cargo/bin/mdbook")).filter(|p| p.is_file())
        })
        .expect("mdbook is not installed: run tests/setup, which installs it from crates.io");
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(mdbook)
        .arg("build")
        .arg(repo().join("docs"))
        .arg("--dest-dir")
        .arg(out.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "mdbook build failed:\n{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    for page in [
        "index.html",
        "cli/bump.html",
        "controller/traffic-safety.html",
    ] {
        assert!(out.path().join(page).is_file(), "{page} not built");
    }
}
