//! `gantry analysis run`: measure an AnalysisTemplate's metrics once, the
//! way the controller would, so a template can be tried before a rollout
//! depends on it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rollout_core::analysis::{self, ArgContext};
use rollout_core::types::{AnalysisPhase, AnalysisTemplate};
use rollout_metrics as prometheus;

/// Try AnalysisTemplates against their providers (Prometheus, web, CloudWatch).
#[derive(Subcommand)]
pub enum Command {
    /// Measure a template's metrics once and print each query, value and verdict.
    ///
    /// Arguments are substituted and conditions judged exactly as the
    /// rollout controller does. Exit status: 0 Successful, 2 Failed,
    /// 3 Inconclusive, 1 for an error (bad template, provider unreachable).
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// The AnalysisTemplate YAML.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: PathBuf,

    /// A template argument (repeatable); needed for args without a default
    /// and for Secret-backed ones.
    #[arg(long = "arg", short = 'a', value_name = "NAME=VALUE", value_parser = super::parse_key_value)]
    args: Vec<(String, String)>,

    /// Query this Prometheus instead of the template's address (e.g. a port-forward).
    #[arg(long, value_name = "URL", env = "GANTRY_PROMETHEUS")]
    prometheus: Option<String>,
}

pub fn exec(command: Command) -> Result<ExitCode> {
    let Command::Run(args) = command;
    Ok(match run(&args)? {
        AnalysisPhase::Successful => ExitCode::SUCCESS,
        AnalysisPhase::Failed => ExitCode::from(2),
        AnalysisPhase::Inconclusive => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    })
}

/// The overall verdict: the worst of the metrics' (Failed, then Error,
/// then Inconclusive, then Successful); dry-run metrics are shown only.
fn run(opts: &RunArgs) -> Result<AnalysisPhase> {
    let path = opts.file.display();
    let text =
        std::fs::read_to_string(&opts.file).with_context(|| format!("cannot read {path}"))?;
    let kind = serde_yaml::from_str::<serde_yaml::Value>(&text)
        .with_context(|| format!("{path}: not YAML"))?
        .get("kind")
        .and_then(|k| k.as_str().map(str::to_string));
    if kind.as_deref() != Some("AnalysisTemplate") {
        bail!("{path}: expected kind: AnalysisTemplate, found {kind:?}");
    }
    let mut template: AnalysisTemplate = serde_yaml::from_str(&text)
        .with_context(|| format!("{path}: not a valid AnalysisTemplate"))?;
    if let Some(address) = &opts.prometheus {
        // Stands in for the template's address, which then need not be set.
        for m in &mut template.spec.metrics {
            if let Some(p) = &mut m.provider.prometheus {
                p.address = address.clone();
            }
        }
    }
    let name = template
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "template".into());
    let analysis = analysis::literal_analysis(&name, &opts.args);
    // No cluster here: Secret-backed arguments must be given with --arg.
    let no_secrets = BTreeMap::new();
    let ctx = ArgContext {
        secrets: Some(&no_secrets),
        ..Default::default()
    };
    let templates = BTreeMap::from([(name, template.spec)]);
    let metrics = analysis::resolve("--arg", &analysis, &templates, &ctx)
        .map_err(|errors| anyhow::anyhow!("{path}: {}", errors.join("\n  ")))?;

    let client = prometheus::Client::new().context("cannot create an HTTP client")?;
    let results = crate::runtime()?.block_on(futures::future::join_all(
        metrics.iter().map(|m| prometheus::measure(&client, m)),
    ));

    let mut out = std::io::stdout().lock();
    for (metric, (measurement, _)) in metrics.iter().zip(&results) {
        writeln!(out, "{}", metric.name)?;
        writeln!(out, "  query:   {}", metric.display_query)?;
        writeln!(
            out,
            "  value:   {}",
            measurement.value.as_deref().unwrap_or("-")
        )?;
        for (field, condition) in [
            ("success", &metric.success_condition),
            ("failure", &metric.failure_condition),
        ] {
            if let Some(c) = condition {
                writeln!(out, "  {field}: {c}")?;
            }
        }
        let dry_run = if metric.dry_run {
            " (dry run: never fails the analysis)"
        } else {
            ""
        };
        writeln!(out, "  verdict: {:?}{dry_run}", measurement.phase)?;
        if let Some(m) = &measurement.message {
            writeln!(out, "  message: {m}")?;
        }
    }
    let worst = [
        AnalysisPhase::Failed,
        AnalysisPhase::Error,
        AnalysisPhase::Inconclusive,
    ]
    .into_iter()
    .find(|p| {
        metrics
            .iter()
            .zip(&results)
            .any(|(metric, (m, _))| !metric.dry_run && m.phase == *p)
    })
    .unwrap_or(AnalysisPhase::Successful);
    Ok(worst)
}
