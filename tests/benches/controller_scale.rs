//! The controller at scale: N Rollouts, each with a stable and a canary
//! Service and an Ingress (objects of realistic size: labels, kubectl's
//! last-applied copy and managedFields included), on the fake API server
//! (`kube_fake`, playing kubelet), driven through the real release
//! `rollout-controller` binary. First, the memory per cached object
//! (Rollout, ReplicaSet, Service, Ingress) as the API server sends it and as
//! the controller keeps it; then, for N = 1,000 and 10,000:
//!
//! - seconds until the caches synced (`/readyz`), and RSS then;
//! - seconds until every Rollout was reconciled and Healthy (the first
//!   release), and RSS then;
//! - seconds until every Rollout took one step of a new release (a canary
//!   ReplicaSet, 20% of traffic, waiting at its pause), and RSS then;
//! - API requests per reconcile in each phase, and for settled Rollouts
//!   (each woken by a change to its Service; nothing to do);
//! - reconcile p50/p99 from the controller's own histograms: the whole
//!   reconcile, and the part that is the controller's (caches + decision,
//!   no API latency).
//!
//! Run: `cargo build --release -p rollout-controller && cargo bench -p
//! gantry-tests --bench controller_scale` (`GANTRY_SCALE_N=1000` for one
//! size). The controller runs with `--kube-api-qps 2000 --kube-api-burst
//! 4000 --concurrency 32`: the defaults (40/80, 10) would make the 10,000
//! run an hour of deliberate throttling.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_tests::kube_fake::{self, FakeApi};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use rollout_controller::cache::{
    self, CachedIngress, CachedReplicaSet, CachedRollout, CachedService,
};
use rollout_controller::replica_sets::new_replica_set;
use rollout_core::hash::pod_template_hash;
use rollout_core::types::Rollout;
use serde_json::{Value, json};

const ROLLOUTS: &str = "apis/gantry.dev/v1alpha1/rollouts";
const SERVICES: &str = "api/v1/services";
const INGRESSES: &str = "apis/networking.k8s.io/v1/ingresses";
const NAMESPACES: usize = 20;
const METRIC: &str = "gantry_rollout_controller_";

fn main() {
    object_memory();
    let sizes: Vec<usize> = match std::env::var("GANTRY_SCALE_N") {
        Ok(n) => vec![n.parse().expect("GANTRY_SCALE_N is a number")],
        Err(_) => vec![1_000, 10_000],
    };
    println!(
        "{:>6}  {:>9} {:>9}  {:>9} {:>9}  {:>9} {:>9}  {:>15}  {:>7}  {:>17}  {:>17}",
        "N",
        "synced s",
        "RSS MiB",
        "healthy s",
        "RSS MiB",
        "stepped s",
        "RSS MiB",
        "req/reconcile",
        "settled",
        "reconcile p50/p99",
        "own p50/p99 ms"
    );
    for n in sizes {
        let f = run(n);
        println!(
            "{:>6}  {:>9.1} {:>9.1}  {:>9.1} {:>9.1}  {:>9.1} {:>9.1}  {:>7.2} / {:<5.2}  {:>7.2}  {:>8.2} / {:<6.2}  {:>8.3} / {:<6.3}",
            n,
            f.synced.0,
            f.synced.1,
            f.healthy.0,
            f.healthy.1,
            f.stepped.0,
            f.stepped.1,
            f.per_reconcile.0,
            f.per_reconcile.1,
            f.settled,
            f.reconcile.0,
            f.reconcile.1,
            f.own.0,
            f.own.1
        );
    }
    println!(
        "req/reconcile: first release / one step; settled: requests per reconcile of a settled \
         Rollout; reconcile p50/p99 in ms (API writes and client throttling included); own: \
         caches + decision only."
    );
}

/// Memory per object in a reflector store, as the API server sends it and
/// as the controller keeps it: the RSS growth of 10,000 copies, each kept.
fn object_memory() {
    const COPIES: usize = 10_000;
    let (api, _server) = kube_fake::start_with(kube_fake::Options {
        managed_fields: true,
        ..Default::default()
    });
    let sample: Rollout = serde_json::from_value(api.create(ROLLOUTS, rollout(0))).unwrap();
    let spec = &sample.spec;
    let hash = pod_template_hash(&spec.template);
    let rs = new_replica_set(
        &sample,
        &spec.template,
        &spec.selector,
        &hash,
        3,
        &Default::default(),
        None,
    );
    let rs = api.create(
        "apis/apps/v1/replicasets",
        serde_json::to_value(rs).unwrap(),
    );
    let service = api.create(SERVICES, service(0, ""));
    let ingress = api.create(INGRESSES, ingress(0));
    println!("memory per cached object ({COPIES} kept; RSS growth): as sent -> as cached");
    let mut kept: Vec<Box<dyn std::any::Any>> = Vec::new();
    let row = |kind: &str, full: f64, lean: f64| {
        println!("  {kind:<12} {:>7.0} B -> {:>6.0} B", full, lean);
    };
    let rollouts = (
        copies::<Rollout>(
            &serde_json::to_value(&sample).unwrap(),
            COPIES,
            |_| {},
            &mut kept,
        ),
        copies::<CachedRollout>(
            &serde_json::to_value(&sample).unwrap(),
            COPIES,
            |_| {},
            &mut kept,
        ),
    );
    row("Rollout", rollouts.0, rollouts.1);
    let replica_sets = (
        copies::<ReplicaSet>(&rs, COPIES, |_| {}, &mut kept),
        copies::<CachedReplicaSet>(&rs, COPIES, cache::trim_replica_set, &mut kept),
    );
    row("ReplicaSet", replica_sets.0, replica_sets.1);
    let services = (
        copies::<Service>(&service, COPIES, |_| {}, &mut kept),
        copies::<CachedService>(&service, COPIES, cache::trim_service, &mut kept),
    );
    row("Service", services.0, services.1);
    let ingresses = (
        copies::<Ingress>(&ingress, COPIES, |_| {}, &mut kept),
        copies::<CachedIngress>(&ingress, COPIES, cache::trim_ingress, &mut kept),
    );
    row("Ingress", ingresses.0, ingresses.1);
}

/// Bytes per object of a store holding `n` renamed copies of `object`,
/// trimmed by `trim`; the store is kept alive in `kept`.
fn copies<K>(
    object: &Value,
    n: usize,
    trim: fn(&mut K),
    kept: &mut Vec<Box<dyn std::any::Any>>,
) -> f64
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
{
    let before = rss_kib(std::process::id());
    let mut writer: Writer<K> = Writer::default();
    for i in 0..n {
        let mut copy = object.clone();
        copy["metadata"]["name"] = json!(format!("copy-{i}"));
        let mut typed: K = serde_json::from_value(copy).unwrap();
        trim(&mut typed);
        writer.apply_watcher_event(&watcher::Event::Apply(typed));
    }
    let grown = rss_kib(std::process::id()).saturating_sub(before);
    kept.push(Box::new(writer));
    grown as f64 * 1024.0 / n as f64
}

struct Figures {
    /// Seconds from start, and RSS in MiB then.
    synced: (f64, f64),
    healthy: (f64, f64),
    stepped: (f64, f64),
    per_reconcile: (f64, f64),
    settled: f64,
    reconcile: (f64, f64),
    own: (f64, f64),
}

fn run(n: usize) -> Figures {
    let (api, _server) = kube_fake::start_with(kube_fake::Options {
        crds_installed: true,
        kubelet: true,
        managed_fields: true,
        namespaces: None,
        readiness_gates: false,
    });
    for i in 0..n {
        api.create(ROLLOUTS, rollout(i));
        api.create(SERVICES, service(i, ""));
        api.create(SERVICES, service(i, "-canary"));
        api.create(INGRESSES, ingress(i));
    }
    let dir = tempfile::tempdir().unwrap();
    let port = gantry_tests::free_port();
    let controller = Running(start_controller(&api, dir.path(), port));
    let controller = &controller.0;
    let started = Instant::now();
    gantry_tests::wait_for_port(port, "the controller's endpoints");
    wait(Duration::from_secs(600), || {
        gantry_tests::http_get(port, "/readyz").0 == 200
    });
    let synced = (started.elapsed().as_secs_f64(), rss_mib(controller));
    api.take_requests();
    let healthy_at = wait_all(&api, n, "Healthy", started);
    let healthy = (healthy_at, settle_rss(controller));
    let first = per_reconcile(&api, port, 0.0);

    let step_start = Instant::now();
    for i in 0..n {
        let image = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "api", "image": format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/svc-{i}:1.2.4")}]}}}});
        api.merge_patch(ROLLOUTS, &namespace(i), &format!("svc-{i}"), &image);
    }
    let stepped = (
        wait_all(&api, n, "Paused", step_start),
        settle_rss(controller),
    );
    let step = per_reconcile(&api, port, first.1);

    // Settled Rollouts, each woken by a change to its stable Service.
    for i in 0..n {
        let touch = json!({"metadata": {"annotations": {"bench.gantry.dev/touched": "1"}}});
        api.merge_patch(SERVICES, &namespace(i), &format!("svc-{i}"), &touch);
    }
    let woken = step.1 + n as f64;
    wait(Duration::from_secs(600), || {
        reconciles(&metrics(port)) >= woken
    });
    std::thread::sleep(Duration::from_secs(2));
    let settled = per_reconcile(&api, port, step.1);

    let text = metrics(port);
    Figures {
        synced,
        healthy,
        stepped,
        per_reconcile: (first.0, step.0),
        settled: settled.0,
        reconcile: quantiles(&text, "reconcile_duration_seconds"),
        own: quantiles(&text, "decide_duration_seconds"),
    }
}

/// The controller process, stopped however the benchmark ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controller(api: &FakeApi, dir: &std::path::Path, port: u16) -> Child {
    Command::new(gantry_tests::binary("rollout-controller"))
        .env("KUBECONFIG", api.kubeconfig(dir))
        .env("RUST_LOG", "warn")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--lease-namespace", "gantry-system", "--identity", "bench"])
        .args(["--verify-alb-weights", "never", "--log-format", "text"])
        .args([
            "--concurrency",
            "32",
            "--kube-api-qps",
            "2000",
            "--kube-api-burst",
            "4000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("rollout-controller starts (cargo build --release -p rollout-controller)")
}

/// Seconds from `since` until every Rollout is in `phase` on its latest
/// generation.
fn wait_all(api: &FakeApi, n: usize, phase: &str, since: Instant) -> f64 {
    wait(Duration::from_secs(3600), || {
        let done = api.count(ROLLOUTS, |r| {
            r["status"]["phase"] == phase
                && r["status"]["observedGeneration"] == r["metadata"]["generation"]
        });
        done == n
    });
    since.elapsed().as_secs_f64()
}

fn wait(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not done after {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// RSS once the controller is idle (requeues done, allocator settled).
fn settle_rss(controller: &Child) -> f64 {
    std::thread::sleep(Duration::from_secs(3));
    rss_mib(controller)
}

fn rss_mib(controller: &Child) -> f64 {
    rss_kib(controller.id()) as f64 / 1024.0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// API requests (watches, leases and discovery aside) since the last call,
/// per reconcile since `before` reconciles; and the reconcile count now.
fn per_reconcile(api: &FakeApi, port: u16, before: f64) -> (f64, f64) {
    let requests = api
        .take_requests()
        .into_iter()
        .filter(|(_, path)| {
            !path.contains("watch=") && !path.contains("/leases") && !path.ends_with("v1alpha1")
        })
        .count();
    let now = reconciles(&metrics(port));
    (requests as f64 / (now - before).max(1.0), now)
}

fn metrics(port: u16) -> String {
    gantry_tests::http_get(port, "/metrics").1
}

fn reconciles(text: &str) -> f64 {
    let name = format!("{METRIC}reconcile_duration_seconds_count");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// p50 and p99 in milliseconds from a histogram's buckets, interpolated
/// within the bucket as Prometheus's histogram_quantile does.
fn quantiles(text: &str, histogram: &str) -> (f64, f64) {
    let prefix = format!("{METRIC}{histogram}_bucket{{le=\"");
    let buckets: BTreeMap<u64, (f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((
                (le * 1e9).min(1e18) as u64,
                (le, count.trim().parse().ok()?),
            ))
        })
        .collect();
    let total = buckets.values().last().map_or(0.0, |b| b.1);
    let quantile = |q: f64| {
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, count) in buckets.values() {
            if *count >= rank {
                let upper = if le.is_finite() { *le } else { lower };
                let within = (rank - below) / (count - below).max(1.0);
                return (lower + (upper - lower) * within) * 1000.0;
            }
            (lower, below) = (*le, *count);
        }
        lower * 1000.0
    };
    (quantile(0.5), quantile(0.99))
}

fn namespace(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

/// kubectl's last-applied copy: the object as applied, once more.
fn with_last_applied(mut object: Value) -> Value {
    let applied = object.to_string();
    object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(applied);
    object
}

fn rollout(i: usize) -> Value {
    let app = format!("svc-{i}");
    with_last_applied(json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": app, "namespace": namespace(i), "finalizers": ["gantry.dev/rollout-cleanup"],
                     "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop", "team": "payments"},
                     "annotations": {}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app, "version": "stable"}},
                "spec": {"containers": [{"name": "api",
                    "image": format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/svc-{i}:1.2.3"),
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                            {"name": "LOG_LEVEL", "value": "info"}, {"name": "OTEL_SERVICE_NAME", "value": app}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}]}},
            "strategy": {"canary": {"canaryService": format!("{app}-canary"), "stableService": app,
                // No ALB here: ready pods count as served at once.
                "trafficRouting": {"alb": {"ingress": app, "servicePort": 80,
                    "targetHealth": {"settleSeconds": 0, "drainSeconds": 0}}},
                "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5m"}}]}}}
    }))
}

fn service(i: usize, suffix: &str) -> Value {
    let app = format!("svc-{i}");
    with_last_applied(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("{app}{suffix}"), "namespace": namespace(i),
                     "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop"},
                     "annotations": {}},
        "spec": {"type": "ClusterIP", "selector": {"app": app},
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
                 "clusterIP": format!("10.96.{}.{}", i / 250, i % 250), "clusterIPs": [format!("10.96.{}.{}", i / 250, i % 250)],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                 "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}
    }))
}

fn ingress(i: usize) -> Value {
    let app = format!("svc-{i}");
    with_last_applied(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": app, "namespace": namespace(i),
                     "labels": {"app.kubernetes.io/name": app},
                     "annotations": {
                         "alb.ingress.kubernetes.io/scheme": "internet-facing",
                         "alb.ingress.kubernetes.io/target-type": "ip",
                         "alb.ingress.kubernetes.io/group.name": "shop",
                         "alb.ingress.kubernetes.io/listen-ports": "[{\"HTTPS\":443}]",
                         "alb.ingress.kubernetes.io/certificate-arn": "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
                         "alb.ingress.kubernetes.io/healthcheck-path": "/readyz"}},
        "spec": {"ingressClassName": "alb",
                 "rules": [{"host": format!("{app}.example.com"), "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": app, "port": {"name": "use-annotation"}}}}]}}]},
        "status": {"loadBalancer": {"ingress": [{"hostname": "k8s-shop-0123456789-1234567890.eu-west-1.elb.amazonaws.com"}]}}
    }))
}
