//! Argo's `job` metric provider: a measurement is a Kubernetes Job in the
//! Rollout's namespace, Successful when it completes and Failed when it
//! fails. The Job is created when the measurement is due and read at each
//! reconcile until it finishes; only then is the measurement recorded (the
//! status never holds one half-taken), stamped with the Job's start and
//! finish. Each Job is named after its run, metric and measurement number,
//! so a restarted controller finds the one it created. Jobs are owned by
//! the Rollout and removed a day after they finish
//! (`ttlSecondsAfterFinished`, unless the template sets it); one still
//! running when its run ends (abort, promotion) finishes on its own.

use k8s_openapi::api::batch::v1::{Job as KubeJob, JobCondition};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use rollout_core::analysis::{Job, Metric};
use rollout_core::hash::fnv1a;
use rollout_core::types::{AnalysisPhase, AnalysisRunStatus, Measurement, Rollout};

/// Labels on every analysis Job: whose it is.
pub const ROLLOUT_LABEL: &str = "gantry.dev/rollout";
pub const RUN_LABEL: &str = "gantry.dev/analysis-run";
const METRIC_ANNOTATION: &str = "gantry.dev/metric";
/// How long a finished Job is kept (its pods' logs with it).
const TTL_AFTER_FINISHED: i64 = 86_400;

/// The measurement `metric`'s Job gives, once it finished; None while it
/// runs (created now if it is not there yet).
pub async fn measure(
    client: &Client,
    rollout: &Rollout,
    run: &AnalysisRunStatus,
    metric: &Metric,
    job: &Job,
) -> Option<Measurement> {
    let ns = rollout.namespace().unwrap_or_default();
    let jobs: Api<KubeJob> = Api::namespaced(client.clone(), &ns);
    let name = job_name(rollout, run, &metric.name);
    let existing = match jobs.get_opt(&name).await {
        Ok(existing) => existing,
        Err(e) => return Some(error(format!("reading Job {name}: {e}"))),
    };
    let Some(existing) = existing else {
        let new = new_job(rollout, run, metric, job, &name);
        return match jobs.create(&PostParams::default(), &new).await {
            Ok(_) => None,
            // Created by an earlier reconcile the cache had not shown.
            Err(kube::Error::Api(e)) if e.code == 409 => None,
            Err(e) => Some(error(format!("creating Job {name}: {e}"))),
        };
    };
    outcome(&name, &existing)
}

/// `<rollout>-<run>-<metric>-<id>-<n>`, at most 63 characters: `id` tells
/// this run (its revision and start) from earlier ones of the same name,
/// `n` is the measurement's number.
fn job_name(rollout: &Rollout, run: &AnalysisRunStatus, metric: &str) -> String {
    let taken = run
        .metrics
        .iter()
        .find(|r| r.name == metric)
        .map_or(0, |r| r.count + r.error);
    let uid = rollout.uid().unwrap_or_default();
    let id = fnv1a(
        format!(
            "{uid}/{}/{}/{}",
            run.name, run.pod_template_hash, run.started_at
        )
        .as_bytes(),
    );
    let suffix = format!("-{id:08x}-{}", taken + 1);
    let base: String = format!("{}-{}-{metric}", rollout.name_any(), run.name)
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let room = 63 - suffix.len();
    let base = base[..base.len().min(room)].trim_end_matches('-');
    format!("{base}{suffix}")
}

fn new_job(
    rollout: &Rollout,
    run: &AnalysisRunStatus,
    metric: &Metric,
    job: &Job,
    name: &str,
) -> KubeJob {
    let mut labels = job.metadata.labels.clone();
    labels.insert(ROLLOUT_LABEL.into(), rollout.name_any());
    labels.insert(RUN_LABEL.into(), run.name.clone());
    let mut annotations = job.metadata.annotations.clone();
    annotations.insert(METRIC_ANNOTATION.into(), metric.name.clone());
    let mut spec = job.spec.clone();
    if spec.get("ttlSecondsAfterFinished").is_none() {
        spec["ttlSecondsAfterFinished"] = json!(TTL_AFTER_FINISHED);
    }
    let owner = rollout.controller_owner_ref(&());
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": rollout.namespace(),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owner.map(|o| vec![o]),
        },
        "spec": spec,
    }))
    .expect("a Job from a checked JobSpec")
}

/// Successful once the Job completed, Failed once it failed.
fn outcome(name: &str, job: &KubeJob) -> Option<Measurement> {
    let conditions = job
        .status
        .as_ref()?
        .conditions
        .as_deref()
        .unwrap_or_default();
    let done = |kind: &str| -> Option<&JobCondition> {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    let (phase, condition, what) = if let Some(c) = done("Complete") {
        (AnalysisPhase::Successful, c, "completed")
    } else if let Some(c) = done("Failed") {
        (AnalysisPhase::Failed, c, "failed")
    } else {
        return None;
    };
    let why = [condition.reason.as_deref(), condition.message.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    let finished = condition
        .last_transition_time
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let started = job
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(finished, |t| t.0);
    Some(Measurement {
        phase,
        value: None,
        started_at: started.to_string(),
        finished_at: finished.to_string(),
        message: Some(if why.is_empty() {
            format!("Job {name} {what}")
        } else {
            format!("Job {name} {what} ({why})")
        }),
    })
}

fn error(message: String) -> Measurement {
    let now = Timestamp::now().to_string();
    Measurement {
        phase: AnalysisPhase::Error,
        value: None,
        started_at: now.clone(),
        finished_at: now,
        message: Some(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_63_characters_and_tell_runs_apart() {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "a-rather-long-rollout-name-for-a-service", "uid": "u1"},
            "spec": {"selector": {}, "template": {}, "strategy": {}}
        }))
        .unwrap();
        let run: AnalysisRunStatus = serde_json::from_value(json!({
            "name": "step-2", "podTemplateHash": "abc", "phase": "Running",
            "startedAt": "2026-01-01T00:00:00Z",
            "metrics": [{"name": "Smoke_Test", "phase": "Running", "count": 2, "error": 1}]
        }))
        .unwrap();
        let name = job_name(&rollout, &run, "Smoke_Test");
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-4"), "the fourth measurement: {name}");
        assert!(
            name.starts_with("a-rather-long-rollout-name-for-a-service-step-2-"),
            "{name}"
        );
        let mut again = run.clone();
        again.started_at = "2026-01-01T00:05:00Z".into();
        assert_ne!(
            name,
            job_name(&rollout, &again, "Smoke_Test"),
            "a retried run"
        );
        assert_ne!(name, job_name(&rollout, &run, "other"));
    }
}
