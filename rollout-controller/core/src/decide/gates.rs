//! Gates: analysis runs recorded in the status, step and background
//! analyses, and what a failed or inconclusive one does.

use super::*;

/// How often a running Job of a job metric is looked at.
const JOB_POLL: Duration = Duration::from_secs(5);

impl Decider<'_> {
    /// Adds the measurements just taken to their runs and reassesses them.
    pub(super) fn record_measurements(&mut self, hash: &str) {
        for taken in &self.world.measurements {
            let Some(metric) = self
                .metrics
                .get(&taken.run)
                .and_then(|ms| ms.iter().find(|m| m.name == taken.metric))
            else {
                continue;
            };
            let Some(run) = self.status.analysis_runs.iter_mut().find(|r| {
                r.name == taken.run
                    && r.pod_template_hash == hash
                    && taken.pod_template_hash == hash
                    && r.phase == AnalysisPhase::Running
            }) else {
                continue;
            };
            if let Some(result) = run.metrics.iter_mut().find(|r| r.name == taken.metric) {
                analysis::record(result, metric, taken.measurement.clone());
            }
            analysis::assess_run(run);
            if run.phase.completed() {
                let note = format!(
                    "analysis {} {:?}{}",
                    run.name,
                    run.phase,
                    run.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
                let reason = format!("AnalysisRun{:?}", run.phase);
                self.events.push((reason, note));
            }
        }
    }

    /// Starts the run `name` for `hash` if it has not started, and reports
    /// where it stands.
    pub(super) fn gate(&mut self, name: &str, hash: &str) -> Gate {
        let metrics = self.metrics.get(name).cloned().unwrap_or_default();
        let now = self.world.now;
        let existing = self
            .status
            .analysis_runs
            .iter()
            .position(|r| r.name == name && r.pod_template_hash == hash);
        let index = match existing {
            Some(i) => i,
            None => {
                self.status
                    .analysis_runs
                    .push(analysis::new_run(name, hash, &metrics, now));
                self.events.push((
                    "AnalysisRunStarted".into(),
                    format!("analysis {name} started"),
                ));
                self.status.analysis_runs.len() - 1
            }
        };
        let run = &self.status.analysis_runs[index];
        match run.phase {
            AnalysisPhase::Successful => Gate::Passed,
            AnalysisPhase::Failed | AnalysisPhase::Error => Gate::Failed(format!(
                "analysis {name}: {}",
                run.message.as_deref().unwrap_or("failed")
            )),
            AnalysisPhase::Inconclusive => Gate::Inconclusive(format!(
                "analysis {name} inconclusive ({})",
                run.message.as_deref().unwrap_or_default()
            )),
            AnalysisPhase::Pending | AnalysisPhase::Running => {
                // A job metric's overdue measurement is its Job still
                // running: looked at again every few seconds.
                let next = run
                    .metrics
                    .iter()
                    .filter_map(|r| {
                        let m = metrics.iter().find(|m| m.name == r.name)?;
                        let at = analysis::next_measurement(run, r, m)?;
                        let job = matches!(m.provider, analysis::Provider::Job(_));
                        Some(match at.duration_since(now) {
                            d if job && d <= SignedDuration::ZERO => JOB_POLL,
                            d => d.unsigned_abs().max(MIN_REQUEUE),
                        })
                    })
                    .min();
                if let Some(wait) = next {
                    self.requeue_in(wait);
                }
                Gate::Running
            }
        }
    }

    /// A blocking analysis step: reached when its run succeeds (or a human
    /// promotes past an inconclusive one).
    pub(super) fn step_analysis(&mut self, index: usize, hash: &str) -> bool {
        match self.gate(&format!("step-{index}"), hash) {
            Gate::Passed => true,
            Gate::Running => {
                self.analysing = true;
                self.condition("Paused", false, "Progressing", "");
                self.progressing(&format!("running analysis step-{index}"));
                false
            }
            Gate::Failed(why) => {
                self.fail(&why);
                false
            }
            Gate::Inconclusive(why) => self.hold(INCONCLUSIVE_REASON, None, Some(&why)),
        }
    }

    /// The background analysis: false while it holds the rollout (failed →
    /// abort set; inconclusive → paused). A promote past an inconclusive run
    /// starts a fresh one.
    pub(super) fn background_analysis(&mut self, hash: &str) -> bool {
        match self.gate(BACKGROUND, hash) {
            Gate::Passed | Gate::Running => true,
            Gate::Failed(why) => {
                self.fail(&why);
                false
            }
            Gate::Inconclusive(why) => {
                if !self.hold(INCONCLUSIVE_REASON, None, Some(&why)) {
                    return false;
                }
                self.status
                    .analysis_runs
                    .retain(|r| !(r.name == BACKGROUND && r.pod_template_hash == hash));
                self.gate(BACKGROUND, hash);
                true
            }
        }
    }

    pub(super) fn fail(&mut self, why: &str) {
        self.status.abort = true;
        self.events.push(("AnalysisFailed".into(), why.to_string()));
    }

    /// Stops the runs still measuring (Argo marks them Successful, "terminated").
    pub(super) fn terminate_runs(&mut self, why: &str) {
        for run in &mut self.status.analysis_runs {
            if !run.phase.completed() {
                run.phase = AnalysisPhase::Successful;
                run.message = Some(format!("terminated: {why}"));
            }
        }
    }
}
