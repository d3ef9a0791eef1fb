//! Analysis against a real Prometheus: `gantry analysis run` end to end, and
//! the controller's measure-and-assess loop over several measurements.

use std::time::{Duration, Instant};

use gantry_tests::prom::{Exporter, Front, Prometheus, T0, gauge_series};
use gantry_tests::{analysis_run, free_port, gantry, run, write};
use rollout_core::analysis::{self, ArgContext, Metric};
use rollout_core::types::{AnalysisPhase, AnalysisTemplate, MetricResult};
use rollout_metrics as prometheus;

const LIVE: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: prometheus}]
  metrics:
  - name: error-rate
    successCondition: result[0] < 0.05
    provider:
      prometheus:
        address: "{{args.prometheus}}"
        query: sum(rate(http_requests_total{code="500"}[5s])) / sum(rate(http_requests_total[5s]))
"#;

/// LIVE's query.
const ERROR_RATIO: &str =
    r#"sum(rate(http_requests_total{code="500"}[5s])) / sum(rate(http_requests_total[5s]))"#;

/// History: 10 minutes at 1% errors, 10 at 20%, 10 of NaN (no traffic).
fn history() -> String {
    let mut om = String::from("# TYPE error_ratio gauge\n");
    om += &gauge_series("error_ratio", "service=\"backend\"", 0, 10, "0.01");
    om += &gauge_series("error_ratio", "service=\"backend\"", 600, 10, "0.2");
    om += &gauge_series("error_ratio", "service=\"backend\"", 1200, 10, "NaN");
    om + "# EOF\n"
}

/// Reads the backfilled ratio at `{{args.at}}` (an exact point in the past).
const AT: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: history}
spec:
  args: [{name: service, value: backend}, {name: at}, {name: prometheus}]
  metrics:
  - name: error-ratio
    successCondition: result[0] < 0.05
    failureCondition: result[0] >= 0.05
    provider:
      prometheus:
        address: "{{args.prometheus}}"
        query: error_ratio{service="{{args.service}}"} @ {{args.at}}
"#;

#[test]
fn prometheus_flag_stands_in_for_a_missing_address() {
    let exporter = Exporter::start(0.01);
    let prom = Prometheus::start(Some(&exporter), None);
    prom.wait_for(ERROR_RATIO);
    let dir = tempfile::tempdir().unwrap();
    let no_address = LIVE.replace("        address: \"{{args.prometheus}}\"\n", "");
    let file = write(
        dir.path(),
        "t.yaml",
        &no_address.replace("args: [{name: prometheus}]", "args: []"),
    );

    let r = analysis_run(&file, &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("spec.metrics[0].provider.prometheus.address: required"),
        "{}",
        r.stderr
    );

    let mut cmd = gantry();
    cmd.args(["analysis", "run", "-f"])
        .arg(&file)
        .args(["--prometheus", &prom.url()]);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("verdict: Successful"), "{}", r.stdout);
}

#[test]
fn live_error_ratio_passes_then_fails_when_errors_climb() {
    let exporter = Exporter::start(0.01);
    let prom = Prometheus::start(Some(&exporter), None);
    let query = ERROR_RATIO;
    prom.wait_for(query);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.yaml", LIVE);
    let arg = format!("prometheus={}", prom.url());

    let r = analysis_run(&file, &[&arg]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("query:   {query}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("value:   [0.0"), "about 1%: {}", r.stdout);
    assert!(r.stdout.contains("verdict: Successful"), "{}", r.stdout);

    exporter.set_ratio(0.2);
    // The 5 s rate window has to fill with the new ratio.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = analysis_run(&file, &[&arg]);
        if r.code != 0 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(r.code, 2, "Failed exits 2: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("verdict: Failed"), "{}", r.stdout);
}

#[test]
fn backfilled_values_pass_fail_and_are_inconclusive_when_empty_or_nan() {
    let prom = Prometheus::start(None, Some(&history()));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.yaml", AT);
    let address = format!("prometheus={}", prom.url());
    let at = |offset: i64| format!("at={}", T0 + offset);

    let r = analysis_run(&file, &[&address, &at(300)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("value:   [0.01]"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "error_ratio{{service=\"backend\"}} @ {}",
            T0 + 300
        )),
        "the resolved query is printed: {}",
        r.stdout
    );

    let r = analysis_run(&file, &[&address, &at(900)]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("value:   [0.2]"), "{}", r.stdout);

    // In dry run the same failure is shown, and does not fail the analysis.
    let dry = write(
        dir.path(),
        "dry.yaml",
        &AT.replace(
            "  metrics:",
            "  dryRun: [{metricName: error-ratio}]\n  metrics:",
        ),
    );
    let r = analysis_run(&dry, &[&address, &at(900)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("verdict: Failed (dry run: never fails the analysis)"),
        "{}",
        r.stdout
    );

    let r = analysis_run(&file, &[&address, &at(1500)]);
    assert_eq!(r.code, 3, "NaN is Inconclusive: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("value:   [NaN]") && r.stdout.contains("the query returned NaN"),
        "{}",
        r.stdout
    );

    let r = analysis_run(&file, &[&address, &at(-7200)]);
    assert_eq!(r.code, 3, "empty is Inconclusive: {}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("value:   []") && r.stdout.contains("no data (empty vector)"),
        "{}",
        r.stdout
    );

    // A bad template names the file and the field; a missing argument is named.
    let bad = write(
        dir.path(),
        "bad.yaml",
        &AT.replace("result[0] < 0.05", "result[0] <"),
    );
    let r = analysis_run(&bad, &[&address, &at(300)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("bad.yaml")
            && r.stderr
                .contains("spec.metrics[0].successCondition: \"result[0] <\" does not parse"),
        "{}",
        r.stderr
    );
    let r = analysis_run(&file, &[&address]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("spec.args[1] (at): no value"),
        "{}",
        r.stderr
    );
}

/// The controller's loop: resolve, measure, record, assess.
fn measure_times(template: &str, args: &[(&str, String)], times: usize) -> MetricResult {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t: AnalysisTemplate = serde_yaml::from_str(template).unwrap();
    let name = t.metadata.name.clone().unwrap();
    let templates = [(name.clone(), t.spec)].into();
    let args: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let analysis = analysis::literal_analysis(&name, &args);
    let metrics: Vec<Metric> =
        analysis::resolve("test", &analysis, &templates, &ArgContext::default()).unwrap();
    let client = prometheus::Client::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut result = MetricResult::default();
    for _ in 0..times {
        if result.phase.completed() {
            break;
        }
        let (m, _) = rt.block_on(prometheus::measure(&client, &metrics[0]));
        analysis::record(&mut result, &metrics[0], m);
    }
    result
}

#[test]
fn failures_past_the_limit_fail_the_metric() {
    let prom = Prometheus::start(None, Some(&history()));
    let template = AT.replace(
        "    successCondition",
        "    interval: 1m\n    count: 5\n    failureLimit: 2\n    successCondition",
    );
    let args = [("prometheus", prom.url()), ("at", (T0 + 900).to_string())];
    let r = measure_times(&template, &args, 5);
    assert_eq!(r.phase, AnalysisPhase::Failed);
    assert_eq!((r.count, r.failed), (3, 3), "failed on the third failure");
    assert_eq!(r.message.as_deref(), Some("failed (3) > failureLimit (2)"));
    assert_eq!(r.measurements[2].value.as_deref(), Some("[0.2]"));

    let args = [("prometheus", prom.url()), ("at", (T0 + 300).to_string())];
    let r = measure_times(&template, &args, 5);
    assert_eq!((r.phase, r.successful), (AnalysisPhase::Successful, 5));
}

#[test]
fn prometheus_down_or_slow_errors_up_to_the_consecutive_limit() {
    let template = AT.replace(
        "    successCondition",
        "    interval: 1m\n    count: 5\n    consecutiveErrorLimit: 2\n    successCondition",
    );
    let down = format!("http://127.0.0.1:{}", free_port());
    let args = [("prometheus", down.clone()), ("at", T0.to_string())];
    let r = measure_times(&template, &args, 5);
    assert_eq!((r.phase, r.error, r.count), (AnalysisPhase::Error, 3, 0));
    let message = r.message.unwrap();
    assert!(
        message.contains("consecutive errors (3) > consecutiveErrorLimit (2)")
            && message.contains(&format!("cannot reach Prometheus at {down}")),
        "{message}"
    );

    // A slow Prometheus: the template's timeout ends the wait.
    let prom = Prometheus::start(None, Some(&history()));
    let slow = Front::start(&prom.url(), Duration::from_secs(5), None);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "slow.yaml",
        &AT.replace("        query:", "        timeout: 1\n        query:"),
    );
    let started = Instant::now();
    let r = analysis_run(
        &file,
        &[
            &format!("prometheus={}", slow.url()),
            &format!("at={}", T0 + 300),
        ],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("verdict: Error"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "Prometheus at {} did not answer within 1s",
            slow.url()
        )),
        "{}",
        r.stdout
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up at the timeout"
    );
}

#[test]
fn auth_headers_come_from_secret_backed_args_and_are_never_printed() {
    let prom = Prometheus::start(None, Some(&history()));
    let front = Front::start(&prom.url(), Duration::ZERO, Some("s3cret-token"));
    let dir = tempfile::tempdir().unwrap();
    let template = AT
        .replace(
            "{name: prometheus}]",
            "{name: prometheus}, {name: token, valueFrom: {secretKeyRef: {name: prom-auth, key: token}}}]",
        )
        .replace(
            "        query:",
            "        headers: [{key: Authorization, value: \"Bearer {{args.token}}\"}]\n        query:",
        );
    let file = write(dir.path(), "auth.yaml", &template);
    let base = [
        format!("prometheus={}", front.url()),
        format!("at={}", T0 + 300),
    ];

    let r = analysis_run(&file, &[&base[0], &base[1]]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("spec.args[3] (token): valueFrom.secretKeyRef: key \"token\" of Secret \"prom-auth\" not found"),
        "{}",
        r.stderr
    );

    let r = analysis_run(&file, &[&base[0], &base[1], "token=s3cret-token"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        front.seen.lock().unwrap().last().unwrap(),
        "Bearer s3cret-token"
    );
    assert!(!r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"));

    let r = analysis_run(&file, &[&base[0], &base[1], "token=wrong"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("HTTP 401"), "{}", r.stdout);
    assert!(!r.stdout.contains("wrong"), "{}", r.stdout);
}
