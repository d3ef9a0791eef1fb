//! `gantry rollout convert`: Argo Rollouts manifests (`argoproj.io/v1alpha1`
//! Rollouts, AnalysisTemplates, ClusterAnalysisTemplates) into Gantry's.
//!
//! The text is edited, not re-serialized: only the `apiVersion` line (and,
//! for a ClusterAnalysisTemplate, `kind` and the Rollouts' `clusterScope`)
//! change, so comments, key order and quoting stay as they were. Each
//! converted object is then read as Gantry reads it: a field the API server
//! would drop, and everything the controller would reject, is a finding
//! with its field path and what to do instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use rollout_core::analysis::{ArgContext, resolve};
use rollout_core::types::{AnalysisTemplate, AnalysisTemplateRef, Rollout, RolloutAnalysis};
use rollout_core::validate::validate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const ARGO: &str = "argoproj.io/v1alpha1";
const GANTRY: &str = "gantry.dev/v1alpha1";

/// The converted stream and what did not carry over.
#[derive(Debug, Default)]
pub struct Converted {
    pub yaml: String,
    /// Objects converted.
    pub objects: usize,
    /// `<document> <Kind> <name>: <path>: <what to do>` — not supported.
    pub unsupported: Vec<String>,
    /// Changes beyond `apiVersion` the reader should know of.
    pub notes: Vec<String>,
}

/// Converts every Argo object in `text` (from `origin`); anything else is
/// passed through untouched.
pub fn convert(text: &str, origin: &str) -> Result<Converted> {
    let mut out = Converted::default();
    for (i, doc) in documents(text).into_iter().enumerate() {
        let at = format!("{origin} (document {})", i + 1);
        let value: Option<Value> =
            serde_yaml::from_str(doc).with_context(|| format!("{at}: not YAML"))?;
        let field = |v: &Option<Value>, k: &str| {
            v.as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api, kind) = (field(&value, "apiVersion"), field(&value, "kind"));
        let known = matches!(
            kind.as_str(),
            "Rollout" | "AnalysisTemplate" | "ClusterAnalysisTemplate"
        );
        if api != ARGO || !known {
            out.yaml.push_str(doc);
            continue;
        }
        let name = value
            .as_ref()
            .and_then(|v| v.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        let who = format!("{at} {kind} {name}");
        let mut text = replace_top_level(doc, "apiVersion", ARGO, GANTRY)
            .with_context(|| format!("{who}: cannot find its apiVersion line"))?;
        match kind.as_str() {
            "ClusterAnalysisTemplate" => {
                text =
                    replace_top_level(&text, "kind", "ClusterAnalysisTemplate", "AnalysisTemplate")
                        .with_context(|| format!("{who}: cannot find its kind line"))?;
                out.notes.push(format!(
                    "{who}: now a namespaced AnalysisTemplate (gantry has no cluster-scoped templates): \
                     apply it in each namespace whose Rollouts use it"
                ));
            }
            "Rollout" if text.contains("clusterScope: true") => {
                text = text.replace("clusterScope: true", "clusterScope: false");
                out.notes.push(format!(
                    "{who}: clusterScope: true is now false: the templates it names are read from \
                     the Rollout's namespace (convert the ClusterAnalysisTemplates too)"
                ));
            }
            _ => {}
        }
        out.unsupported.extend(
            findings(&text, &kind)
                .with_context(|| format!("{who}: not a valid {kind} once converted"))?
                .into_iter()
                .map(|f| format!("{who}: {f}")),
        );
        out.objects += 1;
        out.yaml.push_str(&text);
    }
    Ok(out)
}

/// The documents of a YAML stream, each with its own separator line and
/// trailing text, so that concatenating them gives the input back.
fn documents(text: &str) -> Vec<&str> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let is_separator = line.starts_with("---")
            && line[3..]
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c == '#');
        if is_separator && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    starts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// `doc` with the top-level `key: from` line's value replaced by `to`
/// (quotes and a trailing comment kept); `None` when there is no such line.
fn replace_top_level(doc: &str, key: &str, from: &str, to: &str) -> Option<String> {
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let at = offset + key.len() + 1 + rest.find(from)?;
            let before_value = &doc[offset + key.len() + 1..at];
            if before_value.trim_matches([' ', '"', '\'']).is_empty() {
                return Some(format!("{}{to}{}", &doc[..at], &doc[at + from.len()..]));
            }
        }
        offset += line.len();
    }
    None
}

/// Everything Gantry would drop or reject in one converted object.
fn findings(text: &str, kind: &str) -> Result<Vec<String>> {
    let input: Value = serde_yaml::from_str(text)?;
    if kind == "Rollout" {
        let rollout: Rollout = serde_json::from_value(input.clone())?;
        let mut found = dropped(&input, &rollout);
        if let Err(errors) = validate(&rollout.spec) {
            found.extend(errors);
        }
        return Ok(found);
    }
    let template: AnalysisTemplate = serde_json::from_value(input.clone())?;
    let mut found = dropped(&input, &template);
    found.extend(template_errors(&template));
    Ok(found)
}

/// The template checked as the controller checks it, its arguments
/// standing in for any values a Rollout would pass. A field whose value
/// comes from such an argument is not known here: it is checked when a
/// Rollout passes it (`gantry rollout plan`, the controller), not reported.
fn template_errors(template: &AnalysisTemplate) -> Vec<String> {
    let name = template.metadata.name.clone().unwrap_or_default();
    let analysis = RolloutAnalysis {
        templates: vec![AnalysisTemplateRef {
            template_name: name.clone(),
            cluster_scope: None,
        }],
        args: Vec::new(),
        ..Default::default()
    };
    let mut spec = template.spec.clone();
    let mut unknown = Vec::new();
    for arg in &mut spec.args {
        if arg.value.is_none() && arg.value_from.is_none() {
            let stand_in = format!("<{}>", arg.name);
            arg.value = Some(stand_in.clone());
            unknown.push(stand_in);
        }
    }
    let templates = BTreeMap::from([(name, spec)]);
    let path = "analysis";
    match resolve(path, &analysis, &templates, &ArgContext::default()) {
        Ok(_) => Vec::new(),
        // "AnalysisTemplate NAME: spec…" → "spec…": the finding names it already.
        Err(errors) => errors
            .into_iter()
            .filter(|e| !unknown.iter().any(|u| e.contains(u.as_str())))
            .map(|e| {
                e.split_once(": ")
                    .map_or(e.clone(), |(_, rest)| rest.to_string())
            })
            .collect(),
    }
}

/// Fields of `input` the typed object does not keep: the API server would
/// prune them from a `gantry.dev` object without a word.
fn dropped<T: Serialize + DeserializeOwned>(input: &Value, typed: &T) -> Vec<String> {
    let kept = serde_json::to_value(typed).unwrap_or(Value::Null);
    let mut found = Vec::new();
    missing("", input, &kept, &mut found);
    found
        .into_iter()
        .map(|path| format!("{path}: {}", instead(&path)))
        .collect()
}

fn missing(path: &str, input: &Value, kept: &Value, found: &mut Vec<String>) {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(kept) => missing(&p, v, kept, found),
                    None if !empty(v) => found.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, kept)) in a.iter().zip(b).enumerate() {
                missing(&format!("{path}[{i}]"), v, kept, found);
            }
        }
        _ => {}
    }
}

/// What to do about an Argo field Gantry does not have.
fn instead(path: &str) -> &'static str {
    const KNOWN: [(&str, &str); 4] = [
        (
            "spec.analysis",
            "gantry keeps each canary's analysis runs in the Rollout status; remove it",
        ),
        (
            "minPodsPerReplicaSet",
            "a canary with any weight gets at least one pod; remove it",
        ),
        (
            "trafficRouting.maxTrafficWeight",
            "weights are percentages (0–100); scale setWeight values and remove it",
        ),
        (
            "analysisRunMetadata",
            "analysis runs live in the Rollout status; remove it",
        ),
    ];
    KNOWN.iter().find(|(field, _)| path.contains(field)).map_or(
        "not a gantry field (the API server would drop it): remove it",
        |(_, what)| what,
    )
}

/// The report: notes, then unsupported fields, one per line.
pub fn report(c: &Converted) -> String {
    let mut out = String::new();
    for n in &c.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for u in &c.unsupported {
        let _ = writeln!(out, "unsupported: {u}");
    }
    let _ = writeln!(
        out,
        "{} object(s) converted, {} unsupported field(s)",
        c.objects,
        c.unsupported.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_the_stream() {
        let text = "a: 1\n---\nb: 2\n--- # c\nc: 3\n";
        let docs = documents(text);
        assert_eq!(docs, ["a: 1\n", "---\nb: 2\n", "--- # c\nc: 3\n"]);
        assert_eq!(docs.concat(), text);
        assert_eq!(documents("---\na: 1\n"), ["---\na: 1\n"]);
    }

    #[test]
    fn only_the_top_level_value_changes() {
        let doc = "apiVersion: \"argoproj.io/v1alpha1\" # Argo\nkind: Rollout\nspec:\n  apiVersion: argoproj.io/v1alpha1\n";
        assert_eq!(
            replace_top_level(doc, "apiVersion", ARGO, GANTRY).unwrap(),
            "apiVersion: \"gantry.dev/v1alpha1\" # Argo\nkind: Rollout\nspec:\n  apiVersion: argoproj.io/v1alpha1\n"
        );
        assert_eq!(
            replace_top_level("kind: Rollout\n", "apiVersion", ARGO, GANTRY),
            None
        );
    }

    #[test]
    fn values_a_rollout_or_secret_gives_are_not_findings() {
        let template = |interval: &str| -> AnalysisTemplate {
            serde_yaml::from_str(&format!(
                r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: web}}
spec:
  args:
  - name: interval
  - name: url
    valueFrom: {{secretKeyRef: {{name: s, key: url}}}}
  metrics:
  - name: check
    interval: "{interval}"
    provider: {{web: {{url: "{{{{args.url}}}}"}}}}
"#
            ))
            .unwrap()
        };
        assert_eq!(
            template_errors(&template("{{args.interval}}")),
            Vec::<String>::new()
        );
        let literal = template_errors(&template("soon"));
        assert_eq!(literal.len(), 1, "{literal:?}");
        assert!(literal[0].contains("interval"), "{literal:?}");
    }
}
