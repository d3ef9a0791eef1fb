//! `gantry rollout dashboard` in a real browser (headless Chromium through
//! chromedriver) against the fake API server: the page shows where the
//! Rollout is and follows it live as it moves through its steps (one
//! shared watch, however many pages), charts its weight and measurements,
//! sends exactly `gantry rollout promote`'s patch, shows the API server's
//! refusal, and refuses actions without the CSRF token or from another Host.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use fantoccini::{Client, Locator};
use gantry_tests::browser::Chromedriver;
use gantry_tests::kube_fake::{self, FakeApi};
use gantry_tests::{gantry, repo};
use http::Method;
use serde_json::{Value, json};

const ROLLOUTS: &str = "apis/gantry.dev/v1alpha1/rollouts";
const TEMPLATES: &str = "apis/gantry.dev/v1alpha1/analysistemplates";
const REPLICA_SETS: &str = "apis/apps/v1/replicasets";

/// `seconds` before the test started (one clock, so a measurement reads
/// the same in every status written).
fn ago(seconds: i64) -> String {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    static START: std::sync::OnceLock<Timestamp> = std::sync::OnceLock::new();
    (*START.get_or_init(Timestamp::now) - SignedDuration::from_secs(seconds)).to_string()
}

fn measurement(value: &str, seconds_ago: i64) -> Value {
    let phase = if value.parse::<f64>().unwrap() < 0.05 {
        "Successful"
    } else {
        "Failed"
    };
    json!({"phase": phase, "value": value, "startedAt": ago(seconds_ago + 1), "finishedAt": ago(seconds_ago)})
}

/// Status at step `index` (of setWeight 20, pause, setWeight 50, pause)
/// with the canary at `weight`, waiting at a pause, measured so far.
fn status(index: i32, weight: i32, measurements: Vec<Value>) -> Value {
    json!({
        "phase": "Paused", "message": "waiting for promote", "currentStepIndex": index,
        "observedGeneration": 1,
        "stepDisplay": format!("{index}/4"), "stableRS": "aaa", "currentPodHash": "bbb",
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": ago(5)}],
        "canary": {"weights": {"canary": {"weight": weight, "serviceName": "backend-canary"},
                               "stable": {"weight": 100 - weight, "serviceName": "backend-stable"},
                               "verified": true}},
        "analysisRuns": [{"name": "background", "podTemplateHash": "bbb", "phase": "Running",
                          "startedAt": ago(300),
                          "metrics": [{"name": "error-rate", "phase": "Running",
                                       "count": measurements.len(), "successful": measurements.len(),
                                       "measurements": measurements}]}]
    })
}

fn cluster() -> (FakeApi, tokio::runtime::Runtime) {
    let (fake, runtime) = kube_fake::start(true, &["shop"]);
    fake.create(
        TEMPLATES,
        json!({
            "apiVersion": "gantry.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "error-rate", "namespace": "shop"},
            "spec": {"metrics": [{"name": "error-rate", "interval": "30s",
                                  "successCondition": "result[0] < 0.05",
                                  "provider": {"prometheus": {"address": "http://prometheus:9090",
                                                              "query": "sum(rate(errors[1m]))"}}}]}
        }),
    );
    fake.create(ROLLOUTS, json!({
        "apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "backend", "namespace": "shop"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "backend"}},
            "template": {"metadata": {"labels": {"app": "backend"}},
                         "spec": {"containers": [{"name": "app", "image": "shop/backend:1.4.0"}]}},
            "strategy": {"canary": {
                "canaryService": "backend-canary", "stableService": "backend-stable",
                "analysis": {"templates": [{"templateName": "error-rate"}]},
                "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}
        },
        "status": status(1, 20, vec![measurement("0.01", 60), measurement("0.02", 30)])
    }));
    for (hash, replicas) in [("aaa", 4), ("bbb", 1)] {
        fake.create(REPLICA_SETS, json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("backend-{hash}"), "namespace": "shop",
                         "labels": {"app": "backend", "rollouts-pod-template-hash": hash},
                         "ownerReferences": [{"apiVersion": "gantry.dev/v1alpha1", "kind": "Rollout",
                                              "name": "backend", "uid": "uid-shop-backend"}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "backend"}}},
            "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        }));
    }
    (fake, runtime)
}

/// The dashboard on a free port; stopped on drop.
struct Dashboard {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Dashboard {
    fn start(fake: &FakeApi) -> Dashboard {
        let dir = tempfile::tempdir().unwrap();
        let mut child = gantry()
            .args(["rollout", "dashboard", "-n", "shop", "--port", "0"])
            .env("KUBECONFIG", fake.kubeconfig(dir.path()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Dashboard {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (up to 10 s) until the element `css` reads `expected`.
async fn until_text(browser: &Client, css: &str, expected: &str) {
    for _ in 0..100 {
        if let Ok(e) = browser.find(Locator::Css(css)).await
            && e.text().await.is_ok_and(|t| t.contains(expected))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{css} never read {expected:?}; it reads {:?}",
        text(browser, css).await
    );
}

async fn count(browser: &Client, css: &str) -> usize {
    browser.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Clicks the action button `action` and accepts its confirmation. The
/// page re-renders as the Rollout moves, so a button found may be
/// replaced before the click lands: then it is found again.
async fn click(browser: &Client, action: &str) {
    let button = Locator::Css(&format!("button[data-action='{action}']"));
    for _ in 0..10 {
        match browser.find(button).await.unwrap().click().await {
            Err(e) if e.is_stale_element_reference() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            clicked => {
                clicked.unwrap();
                browser.accept_alert().await.unwrap();
                return;
            }
        }
    }
    panic!("the {action} button kept being replaced");
}

fn watches_of_rollouts(fake: &FakeApi) -> usize {
    fake.take_requests()
        .iter()
        .filter(|(m, p)| *m == Method::GET && p.contains("/rollouts?") && p.contains("watch=true"))
        .count()
}

#[test]
fn the_page_follows_a_canary_and_promotes_it() {
    let (fake, _api) = cluster();
    let dashboard = Dashboard::start(&fake);
    let chromedriver = Chromedriver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let browser = chromedriver.session(1280, 1100).await;
        browser.goto(&format!("{}/", dashboard.url)).await.unwrap();
        until_text(&browser, "table.rollouts", "shop/backend").await;
        assert!(text(&browser, "table.rollouts").await.contains("canary 20% / stable 80%"));

        browser.goto(&format!("{}/rollouts/shop/backend", dashboard.url)).await.unwrap();
        until_text(&browser, "#connection", "live").await;
        assert_eq!(text(&browser, "#phase").await, "Paused");
        assert_eq!(text(&browser, "#step").await, "1/4");
        assert!(text(&browser, "#traffic").await.contains("canary 20% / stable 80% applied by the ALB"));
        assert_eq!(text(&browser, "#steps li.current").await, "► 2. pause until promoted");
        assert_eq!(count(&browser, "#chart-weight circle").await, 1);
        assert_eq!(count(&browser, "figure[data-metric='error-rate'] circle").await, 2);
        assert!(text(&browser, ".analysis").await.contains("success: result[0] < 0.05"));
        let retry = browser.find(Locator::Css("button[data-action='retry']")).await.unwrap();
        assert_eq!(retry.attr("disabled").await.unwrap().as_deref(), Some("true"));
        let why = retry.attr("title").await.unwrap().unwrap_or_default();
        assert!(why.contains("is not aborted"), "{why}");

        // The controller moves it on: the page follows without a reload.
        fake.patch_status(ROLLOUTS, "shop", "backend", &json!({"status": status(3, 50,
            vec![measurement("0.01", 60), measurement("0.02", 30), measurement("0.08", 2)])}));
        until_text(&browser, "#step", "3/4").await;
        assert!(text(&browser, "#traffic").await.contains("canary 50% / stable 50%"));
        assert_eq!(count(&browser, "#chart-weight circle").await, 2);
        assert_eq!(count(&browser, "figure[data-metric='error-rate'] circle").await, 3);
        // A traffic gate being waited at is shown as it is recorded.
        let gate = "1 of 2 pods of backend-bbb healthy in backend-canary's target group";
        fake.patch_status(ROLLOUTS, "shop", "backend", &json!({"status": {"trafficGates": [
            {"kind": "TargetsHealthy", "target": "backend-canary", "podTemplateHash": "bbb",
             "since": ago(3), "message": gate}]}}));
        until_text(&browser, "#gates", gate).await;

        // A second page shares the watches.
        let second = chromedriver.session(800, 600).await;
        second.goto(&format!("{}/rollouts/shop/backend", dashboard.url)).await.unwrap();
        until_text(&second, "#connection", "live").await;
        second.close().await.unwrap();
        assert_eq!(watches_of_rollouts(&fake), 1, "one watch of Rollouts for every page");

        fake.take_writes();
        click(&browser, "promote").await;
        until_text(&browser, "#notice", "rollout 'backend' promoted").await;
        assert_eq!(
            fake.take_writes(),
            vec![(
                Method::PATCH,
                "/apis/gantry.dev/v1alpha1/namespaces/shop/rollouts/backend/status?".to_string(),
                json!({"status": {"pauseConditions": null}})
            )]
        );

        let figures: Value = browser
            .execute(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const assets = performance.getEntriesByType('resource').filter(r => r.name.includes('/assets/'));
                 const paint = performance.getEntriesByName('first-contentful-paint')[0];
                 return {html: nav.decodedBodySize, assets: assets.reduce((n, r) => n + r.decodedBodySize, 0),
                         firstPaint: paint ? paint.startTime : null};",
                vec![],
            )
            .await
            .unwrap();
        let bytes = figures["html"].as_u64().unwrap() + figures["assets"].as_u64().unwrap();
        println!("dashboard page weight {bytes} bytes ({figures}); first contentful paint {} ms", figures["firstPaint"]);
        assert!(bytes < 50_000, "the page stays small: {figures}");

        let png = browser.screenshot().await.unwrap();
        let artifacts = repo().join("target/artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("dashboard.png"), &png).unwrap();
        if std::env::var_os("GANTRY_BLESS").is_some() {
            std::fs::write(repo().join("docs/src/dashboard.png"), &png).unwrap();
        }

        // What RBAC forbids fails with the API server's message.
        let refusal = "rollouts.gantry.dev \"backend\" is forbidden: User \"dev\" cannot patch resource \"rollouts/status\" in namespace \"shop\"";
        fake.forbid_patches(refusal);
        browser.find(Locator::Css("button[data-action='abort']")).await.unwrap();
        click(&browser, "abort").await;
        until_text(&browser, "#notice", "cannot patch resource \"rollouts/status\" in namespace \"shop\" (403)").await;
        browser.close().await.unwrap();
    });
}

#[test]
fn actions_need_the_csrf_token_and_the_dashboards_host() {
    let (fake, _api) = cluster();
    let dashboard = Dashboard::start(&fake);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let promote = format!("{}/api/rollouts/shop/backend/promote", dashboard.url);
        let page = http
            .get(format!("{}/rollouts/shop/backend", dashboard.url))
            .send()
            .await
            .unwrap();
        let html = page.text().await.unwrap();
        let token = html
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page carries its token");

        let without = http.post(&promote).send().await.unwrap();
        assert_eq!(without.status(), 403);
        let wrong = http
            .post(&promote)
            .header("x-gantry-csrf", "0".repeat(64))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403);
        let rebound = http
            .post(&promote)
            .header("x-gantry-csrf", token)
            .header("host", "attacker.example:3100")
            .send()
            .await
            .unwrap();
        assert_eq!(
            rebound.status(),
            403,
            "DNS rebinding: another Host is refused"
        );
        assert!(fake.take_writes().is_empty(), "nothing was written");

        let ok = http
            .post(&promote)
            .header("x-gantry-csrf", token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let writes = fake.take_writes();
        assert_eq!(writes.len(), 1, "{writes:?}");

        let other = http
            .get(format!("{}/rollouts/kube-system/x", dashboard.url))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "only the namespace it was started for");
    });
}
