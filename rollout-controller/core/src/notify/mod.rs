//! Notifications, decided purely: which occurrences a Rollout's status
//! shows (a canary started, a step completed, a pause, a failed analysis,
//! an abort, completion, Degraded), each with a key, and which of them are
//! new. The keys already sent live in `status.notified`, written with the
//! same status patch, so an occurrence goes out once: not on every
//! reconcile, not again after a restart.
//!
//! - `config`: destinations from the `gantry-notifications` ConfigMap and
//!   who subscribes to what;
//! - `message`: the bodies (webhook JSON, Slack Block Kit, Teams, Google Chat).

pub mod config;
pub mod message;

use k8s_openapi::jiff::Timestamp;

use crate::display::describe;
use crate::types::{AnalysisPhase, Phase, Rollout, RolloutStatus};
use crate::validate::Plan;

/// What a destination can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    RolloutStarted,
    StepCompleted,
    Paused,
    AnalysisFailed,
    Aborted,
    Completed,
    Degraded,
}

impl Trigger {
    pub const ALL: [Trigger; 7] = [
        Trigger::RolloutStarted,
        Trigger::StepCompleted,
        Trigger::Paused,
        Trigger::AnalysisFailed,
        Trigger::Aborted,
        Trigger::Completed,
        Trigger::Degraded,
    ];

    /// As written in the ConfigMap and the subscribe annotations.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::RolloutStarted => "rollout-started",
            Trigger::StepCompleted => "step-completed",
            Trigger::Paused => "paused",
            Trigger::AnalysisFailed => "analysis-failed",
            Trigger::Aborted => "aborted",
            Trigger::Completed => "completed",
            Trigger::Degraded => "degraded",
        }
    }

    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Every trigger's name, for error messages.
    pub fn names() -> String {
        Trigger::ALL.map(Trigger::name).join(", ")
    }
}

/// One thing that happened to a Rollout, as the messages tell it.
#[derive(Clone, Debug, PartialEq)]
pub struct Occurrence {
    pub trigger: Trigger,
    /// `<trigger>/<pod template hash>/…`: the same occurrence has the same key.
    pub key: String,
    pub namespace: String,
    pub rollout: String,
    /// The pod template hash of the revision it concerns.
    pub revision: String,
    /// Steps completed, `1/4`, as `kubectl get ro` shows it.
    pub step: Option<String>,
    pub canary_weight: i32,
    pub phase: String,
    /// One sentence for people: what happened.
    pub summary: String,
    pub images: Vec<String>,
    /// When the controller saw it.
    pub at: Timestamp,
}

/// What `status` shows, each occurrence with its key (old ones included);
/// `plan` is the Rollout's validated spec (`None`: invalid, no steps).
pub fn occurrences(
    rollout: &Rollout,
    plan: Option<&Plan>,
    status: &RolloutStatus,
    at: Timestamp,
) -> Vec<Occurrence> {
    let Some(hash) = status.current_pod_hash.clone() else {
        return Vec::new();
    };
    let steps: Vec<String> = plan
        .map(|plan| plan.steps.iter().map(describe).collect())
        .unwrap_or_default();
    let canary = status.stable_rs.is_some() && status.stable_rs.as_ref() != Some(&hash);
    let index = status.current_step_index.unwrap_or(0).max(0) as usize;
    let mut found: Vec<(Trigger, String, String)> = Vec::new();
    let mut add = |trigger: Trigger, id: String, summary: String| {
        found.push((trigger, id, summary));
    };
    if canary {
        add(
            Trigger::RolloutStarted,
            String::new(),
            "a canary started".into(),
        );
        for (i, step) in steps.iter().enumerate().take(index) {
            let summary = format!("step {} of {} completed: {step}", i + 1, steps.len());
            add(Trigger::StepCompleted, format!("/{}", i + 1), summary);
        }
        if !status.pause_conditions.is_empty() && !status.abort {
            let step = steps.get(index).map_or("a pause".into(), |s| s.clone());
            let summary = format!("paused at step {} of {}: {step}", index + 1, steps.len());
            add(Trigger::Paused, format!("/{}", index + 1), summary);
        }
    }
    for run in &status.analysis_runs {
        if run.pod_template_hash == hash
            && matches!(run.phase, AnalysisPhase::Failed | AnalysisPhase::Error)
        {
            let failing: Vec<&str> = run
                .metrics
                .iter()
                .filter(|m| {
                    !m.dry_run && matches!(m.phase, AnalysisPhase::Failed | AnalysisPhase::Error)
                })
                .map(|m| m.name.as_str())
                .collect();
            let why = run
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let summary = format!(
                "analysis {} {:?} ({}){why}",
                run.name,
                run.phase,
                failing.join(", ")
            );
            add(Trigger::AnalysisFailed, format!("/{}", run.name), summary);
        }
    }
    if status.abort {
        let since = status.aborted_at.clone().unwrap_or_default();
        add(
            Trigger::Aborted,
            format!("/{since}"),
            "aborted: all traffic back on stable".into(),
        );
    }
    if status.phase == Some(Phase::Healthy) && status.stable_rs.as_ref() == Some(&hash) {
        add(
            Trigger::Completed,
            String::new(),
            "completed: the revision is stable".into(),
        );
    }
    if status.phase == Some(Phase::Degraded) {
        let reason = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Healthy" && c.status == "False")
            .and_then(|c| c.reason.clone())
            .unwrap_or_else(|| "Degraded".into());
        add(
            Trigger::Degraded,
            format!("/{reason}"),
            format!("degraded ({reason})"),
        );
    }
    let message = status.message.clone();
    found
        .into_iter()
        .map(|(trigger, id, summary)| Occurrence {
            trigger,
            key: format!("{}/{hash}{id}", trigger.name()),
            namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
            rollout: rollout.metadata.name.clone().unwrap_or_default(),
            revision: hash.clone(),
            step: status.step_display.clone(),
            canary_weight: status
                .canary
                .weights
                .as_ref()
                .map_or(0, |w| w.canary.weight),
            phase: status
                .phase
                .map_or("Progressing".into(), |p| format!("{p:?}")),
            summary: match &message {
                Some(m) if trigger != Trigger::StepCompleted => format!("{summary}. {m}"),
                _ => summary,
            },
            images: rollout.images().into_iter().map(String::from).collect(),
            at,
        })
        .collect()
}

/// The occurrences in `after` (the status about to be written) not sent
/// yet; records them in `after.notified`, which keeps only the current
/// revision's keys (the current attempt's, after a retry). A Rollout
/// reconciled before anything subscribed (a status without `notified`)
/// starts from what it shows now, so subscribing mid-canary does not
/// replay its past.
pub fn due(
    rollout: &Rollout,
    plan: Option<&Plan>,
    after: &mut RolloutStatus,
    at: Timestamp,
) -> Vec<Occurrence> {
    let now = occurrences(rollout, plan, after, at);
    let before = rollout.status.as_ref();
    let baseline = before.is_some_and(|b| b.notified.is_none() && b.observed_generation.is_some());
    let hash = after.current_pod_hash.clone().unwrap_or_default();
    // A retry (the abort's time cleared) starts the canary again: its
    // start, steps and pauses are new occurrences.
    let retried = before.is_some_and(|b| b.aborted_at.is_some()) && after.aborted_at.is_none();
    let notified = after.notified.get_or_insert_with(Vec::new);
    notified.retain(|key| !retried && key.split('/').nth(1) == Some(hash.as_str()));
    let new: Vec<Occurrence> = now
        .into_iter()
        .filter(|o| !notified.contains(&o.key))
        .collect();
    notified.extend(new.iter().map(|o| o.key.clone()));
    if baseline { Vec::new() } else { new }
}
