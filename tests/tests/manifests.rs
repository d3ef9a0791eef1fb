//! What a platform team applies: every kustomization under `manifests/`
//! builds with `kubectl kustomize`; the Rollouts and AnalysisTemplates it
//! renders are valid against the CRD schemas generated from the Rust types
//! and for the controller itself; references between objects resolve; alert
//! rules are valid PromQL on metrics that exist; and `gantry bump` on an
//! overlay changes exactly the rendered images.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_tests::{binary, gantry, kustomize, repo, run, which};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use rollout_core::analysis::{ArgContext, Provider, resolve_plan};
use rollout_core::types::{AnalysisTemplate, Rollout};
use serde::Deserialize;
use serde_json::{Value, json};

/// `kubectl kustomize DIR`, as JSON objects.
fn render(dir: &Path) -> Vec<Value> {
    let text = kustomize(dir);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn example(overlay: &str) -> Vec<Value> {
    render(&repo().join("manifests/example/overlays").join(overlay))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered objects"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

/// Every kustomization in the repository, so a new one cannot go untested.
fn kustomizations() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(repo().join("manifests"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
        // A Component renders only inside a kustomization that uses it.
        .filter(|p| {
            !std::fs::read_to_string(p)
                .unwrap()
                .contains("\nkind: Component")
        })
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_kustomization_builds() {
    let dirs = kustomizations();
    let relative: Vec<String> = dirs
        .iter()
        .map(|d| d.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    for expected in [
        "manifests/controller",
        "manifests/example/base",
        "manifests/example/overlays/staging",
        "manifests/example/overlays/prod",
        "manifests/example/argocd",
        "manifests/example/backup",
    ] {
        assert!(relative.iter().any(|r| r == expected), "{expected} missing");
    }
    for dir in &dirs {
        let objects = render(dir);
        assert!(!objects.is_empty(), "{} renders nothing", dir.display());
        for o in &objects {
            assert!(
                o["apiVersion"].is_string() && o["kind"].is_string() && !name(o).is_empty(),
                "{}: an object without apiVersion/kind/name: {o}",
                dir.display()
            );
        }
    }
}

#[test]
fn overlays_put_everything_namespaced_in_their_namespace() {
    let cluster_scoped = ["Namespace", "PriorityClass"];
    for (overlay, namespace) in [("staging", "webapp-staging"), ("prod", "webapp-prod")] {
        let objects = example(overlay);
        let ns = find(&objects, "Namespace", namespace);
        // The LB controller's readiness gates, which the canary's weight
        // moves on without waiting its settle time.
        assert_eq!(
            ns["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"], "enabled",
            "{overlay}"
        );
        for o in &objects {
            let kind = o["kind"].as_str().unwrap();
            if !cluster_scoped.contains(&kind) {
                assert_eq!(
                    o["metadata"]["namespace"],
                    namespace,
                    "{overlay}: {kind} {} is not in {namespace}",
                    name(o)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Custom resources against the generated CRD schemas

/// The CRD's structural schema as JSON Schema, with the API server's
/// Kubernetes-specific rules: unknown fields are errors (kubectl's strict
/// field validation) unless `x-kubernetes-preserve-unknown-fields`,
/// `nullable` admits null, int-or-string admits both.
fn json_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    if map.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        return json!({"anyOf": [{"type": "integer"}, {"type": "string"}]});
    }
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), json_schema(v)))
                    .collect(),
            ),
            "items" | "additionalProperties" if value.is_object() => json_schema(value),
            "anyOf" | "oneOf" | "allOf" => {
                Value::Array(value.as_array().unwrap().iter().map(json_schema).collect())
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if map.get("nullable") == Some(&json!(true))
        && let Some(t) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserve {
        out.insert("additionalProperties".into(), json!(false));
    }
    out.into()
}

/// Schema problems of one custom resource, each with its field path.
fn schema_errors(crd: &CustomResourceDefinition, object: &Value) -> Vec<String> {
    let version = &crd.spec.versions[0];
    let schema = serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("CRD schema"),
    )
    .unwrap();
    let mut schema = json_schema(&schema);
    // The API server checks these itself, not through the CRD's schema.
    schema["properties"]["apiVersion"] = json!({"type": "string"});
    schema["properties"]["kind"] = json!({"type": "string"});
    schema["properties"]["metadata"] = json!({"type": "object"});
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("the CRD schema compiles");
    validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn rendered_rollouts_and_templates_match_the_generated_crd_schemas() {
    for overlay in ["staging", "prod"] {
        let objects = example(overlay);
        let mut checked = 0;
        for o in objects
            .iter()
            .filter(|o| o["apiVersion"] == "gantry.dev/v1alpha1")
        {
            let crd = match o["kind"].as_str() {
                Some("Rollout") => Rollout::crd(),
                Some("AnalysisTemplate") => AnalysisTemplate::crd(),
                other => panic!("{overlay}: unexpected gantry.dev kind {other:?}"),
            };
            let errors = schema_errors(&crd, o);
            assert!(
                errors.is_empty(),
                "{overlay}: {} {} does not match its CRD schema:\n{}",
                o["kind"],
                name(o),
                errors.join("\n")
            );
            checked += 1;
        }
        assert_eq!(
            checked, 2,
            "{overlay}: one Rollout and one AnalysisTemplate"
        );
    }
}

#[test]
fn the_schema_check_rejects_what_the_api_server_would() {
    let objects = example("staging");
    let rollout = find(&objects, "Rollout", "backend");
    let crd = Rollout::crd();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut r = rollout.clone();
        edit(&mut r);
        schema_errors(&crd, &r)
    };
    let errors = broken(&|r| r["spec"]["strategy"]["canary"]["stepz"] = json!([]));
    assert!(
        errors.iter().any(|e| e.contains("stepz")),
        "an unknown field: {errors:?}"
    );
    let errors =
        broken(&|r| r["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = json!("10"));
    assert!(
        errors.iter().any(|e| e.contains("/setWeight")),
        "a string weight: {errors:?}"
    );
    let errors =
        broken(&|r| r["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!(3));
    assert!(
        errors.iter().any(|e| e.contains("imagePullPolicy")),
        "the pod template is validated too: {errors:?}"
    );
    let errors =
        broken(&|r| r["spec"]["strategy"]["canary"]["steps"][1]["pause"]["duration"] = json!("2m"));
    assert!(
        errors.is_empty(),
        "int-or-string accepts a string: {errors:?}"
    );
}

#[test]
fn the_controller_accepts_the_rollouts_and_resolves_their_analysis() {
    for overlay in ["staging", "prod"] {
        let objects = example(overlay);
        let rollout: Rollout =
            serde_json::from_value(find(&objects, "Rollout", "backend").clone()).unwrap();
        let plan = rollout_core::validate::validate(&rollout.spec)
            .unwrap_or_else(|e| panic!("{overlay}: the controller rejects the Rollout: {e:?}"));
        let templates: BTreeMap<_, _> = of_kind(&objects, "AnalysisTemplate")
            .map(|t| {
                let t: AnalysisTemplate = serde_json::from_value(t.clone()).unwrap();
                (t.metadata.name.clone().unwrap(), t.spec)
            })
            .collect();
        let ctx = ArgContext {
            rollout: Some(&rollout.metadata),
            stable_hash: Some("5b8c7d9f4"),
            latest_hash: Some("7f6d5c4b3"),
            ..Default::default()
        };
        let runs = resolve_plan(&plan, &templates, &ctx)
            .unwrap_or_else(|e| panic!("{overlay}: analysis does not resolve: {e:?}"));
        assert_eq!(runs.len(), 2, "{overlay}: two analysis steps");
        for metrics in runs.values() {
            for m in metrics {
                let Provider::Prometheus(p) = &m.provider else {
                    panic!("{overlay}: {} is not a Prometheus metric", m.name);
                };
                assert!(
                    p.query.contains(&format!("namespace=\"webapp-{overlay}\""))
                        && p.query.contains("rollouts_pod_template_hash=\"7f6d5c4b3\""),
                    "{overlay}: {} measures the canary's pods only: {}",
                    m.name,
                    p.query
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// References between objects

#[test]
fn the_rollout_reaches_its_config_services_ingress_and_autoscaler() {
    for overlay in ["staging", "prod"] {
        let objects = example(overlay);
        let rollout = find(&objects, "Rollout", "backend");
        let pod = &rollout["spec"]["template"]["spec"];

        // The generated ConfigMap (hash suffix) reaches the Rollout only
        // through kustomizeconfig/rollout.yaml.
        let config = pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]
            .as_str()
            .unwrap();
        assert!(config.starts_with("backend-config-"), "{overlay}: {config}");
        find(&objects, "ConfigMap", config);
        let secret = pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"]
            .as_str()
            .unwrap();
        find(&objects, "SealedSecret", secret);

        let canary = &rollout["spec"]["strategy"]["canary"];
        for service in [&canary["stableService"], &canary["canaryService"]] {
            let svc = find(&objects, "Service", service.as_str().unwrap());
            assert_eq!(
                svc["spec"]["selector"]["app.kubernetes.io/name"],
                *pod_label(rollout),
                "{overlay}: {service} selects the Rollout's pods"
            );
            assert_eq!(
                svc["metadata"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-path"],
                *rollout_probe_path(rollout, "readinessProbe"),
                "{overlay}: the ALB health check is the readiness endpoint"
            );
        }
        let ingress = find(
            &objects,
            "Ingress",
            canary["trafficRouting"]["alb"]["ingress"].as_str().unwrap(),
        );
        let paths = ingress["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .unwrap();
        let api = paths.iter().find(|p| p["path"] == "/api").unwrap();
        assert_eq!(api["backend"]["service"]["name"], canary["stableService"]);
        assert_eq!(api["backend"]["service"]["port"]["name"], "use-annotation");
        let root = paths.iter().find(|p| p["path"] == "/").unwrap();
        find(
            &objects,
            "Service",
            root["backend"]["service"]["name"].as_str().unwrap(),
        );
        let annotations = &ingress["metadata"]["annotations"];
        assert_eq!(annotations["alb.ingress.kubernetes.io/target-type"], "ip");
        assert_eq!(
            annotations["alb.ingress.kubernetes.io/scheme"],
            "internet-facing"
        );
        assert_eq!(annotations["alb.ingress.kubernetes.io/ssl-redirect"], "443");
        assert!(
            annotations["alb.ingress.kubernetes.io/certificate-arn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:acm:")
        );

        for hpa in of_kind(&objects, "HorizontalPodAutoscaler") {
            let target = &hpa["spec"]["scaleTargetRef"];
            let kind = target["kind"].as_str().unwrap();
            find(&objects, kind, target["name"].as_str().unwrap());
        }
        let hpa = find(&objects, "HorizontalPodAutoscaler", "backend");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"]["apiVersion"],
            "gantry.dev/v1alpha1"
        );
    }
}

fn pod_label(workload: &Value) -> &Value {
    &workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
}

fn rollout_probe_path<'a>(workload: &'a Value, probe: &str) -> &'a Value {
    &workload["spec"]["template"]["spec"]["containers"][0][probe]["httpGet"]["path"]
}

#[test]
fn serving_pods_drain_behind_the_alb_and_are_hardened() {
    for overlay in ["staging", "prod"] {
        let objects = example(overlay);
        let workloads = objects.iter().filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Deployment" | "Rollout" | "StatefulSet")
            )
        });
        for w in workloads {
            let what = format!("{overlay}: {} {}", w["kind"], name(w));
            let pod = &w["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert!(
                    c["resources"]["requests"]["cpu"].is_string(),
                    "{what}: requests"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{what}: limits"
                );
                for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                    assert!(c[probe].is_object(), "{what}: {probe}");
                }
            }
            // Pods behind the ALB: preStop outlasts the deregistration delay
            // and the grace period outlasts preStop.
            let Some(service) = of_kind(&objects, "Service").find(|s| {
                s["spec"]["selector"]["app.kubernetes.io/name"] == *pod_label(w)
                    && s["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-group-attributes"]
                        .is_string()
            }) else {
                continue;
            };
            let delay: u64 = service["metadata"]["annotations"]
                ["alb.ingress.kubernetes.io/target-group-attributes"]
                .as_str()
                .unwrap()
                .strip_prefix("deregistration_delay.timeout_seconds=")
                .unwrap()
                .parse()
                .unwrap();
            let pre_stop: u64 = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
            assert!(
                delay < pre_stop && pre_stop < grace,
                "{what}: deregistration {delay}s < preStop {pre_stop}s < grace {grace}s"
            );
            assert_eq!(pod["priorityClassName"], "webapp-serving", "{what}");
            let selects = |o: &Value| {
                o["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == *pod_label(w)
            };
            assert!(
                of_kind(&objects, "PodDisruptionBudget").any(selects),
                "{what}: a PDB"
            );
        }
        find(&objects, "PriorityClass", "webapp-serving");
        let default_deny = find(&objects, "NetworkPolicy", "default-deny");
        assert_eq!(default_deny["spec"]["podSelector"], json!({}));
        assert_eq!(
            default_deny["spec"]["policyTypes"],
            json!(["Ingress", "Egress"])
        );
    }
}

#[test]
fn operations_objects_are_in_place() {
    for overlay in ["staging", "prod"] {
        let objects = example(overlay);
        let dashboard = find(&objects, "ConfigMap", "grafana-dashboard-webapp");
        assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
        let json: Value =
            serde_json::from_str(dashboard["data"]["webapp.json"].as_str().unwrap()).unwrap();
        assert!(json["panels"].as_array().unwrap().len() >= 4);
        let monitor = find(&objects, "ServiceMonitor", "backend");
        let scraped = of_kind(&objects, "Service")
            .filter(|s| {
                s["metadata"]["labels"]["app.kubernetes.io/name"]
                    == monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            })
            .map(name)
            .collect::<Vec<_>>();
        assert_eq!(
            scraped,
            ["backend-metrics"],
            "{overlay}: each pod scraped once"
        );
    }
    let argocd = render(&repo().join("manifests/example/argocd"));
    for app in of_kind(&argocd, "Application") {
        let path = app["spec"]["source"]["path"].as_str().unwrap();
        assert!(
            repo().join(path).join("kustomization.yaml").is_file(),
            "Application {} points at {path}, which has no kustomization",
            name(app)
        );
    }
    let backup = render(&repo().join("manifests/example/backup"));
    let schedule = find(&backup, "Schedule", "webapp-daily");
    assert_eq!(schedule["metadata"]["namespace"], "velero");
}

#[test]
fn argo_cd_gets_the_generated_health_checks_and_actions_and_keeps_its_own_keys() {
    let expected: BTreeMap<String, String> = rollout_core::argocd::customizations();
    let example = render(&repo().join("manifests/example/argocd"));
    let cm = find(&example, "ConfigMap", "argocd-cm");
    assert_eq!(cm["metadata"]["namespace"], "argocd");
    assert_eq!(
        serde_json::from_value::<BTreeMap<String, String>>(cm["data"].clone()).unwrap(),
        expected
    );

    // An Argo CD installed with kustomize: its argocd-cm keeps its keys.
    // kustomize takes components by relative path only: three levels down.
    let scratch = repo().join("target/kustomize-scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let install = tempfile::tempdir_in(&scratch).unwrap();
    std::fs::write(
        install.path().join("argocd-cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm, namespace: argocd}\n\
         data: {url: https://argocd.example.com, resource.exclusions: '[]'}\n",
    )
    .unwrap();
    std::fs::write(
        install.path().join("kustomization.yaml"),
        "resources: [argocd-cm.yaml]\ncomponents: [../../../manifests/argocd]\n",
    )
    .unwrap();
    let rendered = render(install.path());
    let data = &find(&rendered, "ConfigMap", "argocd-cm")["data"];
    assert_eq!(data["url"], "https://argocd.example.com");
    assert_eq!(data["resource.exclusions"], "[]");
    for (key, value) in &expected {
        assert_eq!(data[key], value.as_str(), "{key}");
    }
}

// ---------------------------------------------------------------------------
// The controller's install manifests

#[test]
fn the_controller_install_is_least_privilege_and_hardened() {
    let objects = render(&repo().join("manifests/controller"));
    let crds: BTreeSet<&str> = of_kind(&objects, "CustomResourceDefinition")
        .map(name)
        .collect();
    assert_eq!(
        crds,
        BTreeSet::from(["analysistemplates.gantry.dev", "rollouts.gantry.dev"])
    );

    let role = find(&objects, "ClusterRole", "gantry-rollout-controller");
    let mut granted = BTreeMap::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let verbs: BTreeSet<String> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                assert!(!verbs.contains("*"), "no wildcard verbs");
                let key = format!("{}/{}", group.as_str().unwrap(), resource.as_str().unwrap());
                assert!(!key.contains('*'), "no wildcard resources: {key}");
                granted.insert(key, verbs);
            }
        }
    }
    let needs = |key: &str, verbs: &[&str]| {
        let have = granted
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not granted"));
        for v in verbs {
            assert!(have.contains(*v), "{key} lacks {v}");
        }
    };
    needs("gantry.dev/rollouts", &["get", "list", "watch", "patch"]);
    needs("gantry.dev/rollouts/status", &["patch"]);
    needs("gantry.dev/rollouts/finalizers", &["update"]);
    needs("gantry.dev/analysistemplates", &["get", "list", "watch"]);
    needs(
        "apps/replicasets",
        &["get", "list", "watch", "create", "patch", "delete"],
    );
    needs("/services", &["get", "list", "watch", "patch"]);
    needs(
        "networking.k8s.io/ingresses",
        &["get", "list", "watch", "patch"],
    );
    needs("events.k8s.io/events", &["create", "patch"]);
    needs("/pods", &["list"]);
    needs("/pods/eviction", &["create"]);
    assert!(
        !granted.contains_key("/secrets"),
        "Secrets are granted per namespace, never cluster-wide"
    );
    let leases = find(&objects, "Role", "gantry-rollout-controller-leader");
    assert_eq!(leases["metadata"]["namespace"], "gantry-system");
    assert_eq!(leases["rules"][0]["resources"], json!(["leases"]));

    let account = find(&objects, "ServiceAccount", "gantry-rollout-controller");
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );
    for binding in objects.iter().filter(|o| {
        matches!(
            o["kind"].as_str(),
            Some("ClusterRoleBinding" | "RoleBinding")
        )
    }) {
        assert_eq!(binding["subjects"][0]["name"], name(account));
        assert_eq!(binding["subjects"][0]["namespace"], "gantry-system");
    }

    let deploy = find(&objects, "Deployment", "gantry-rollout-controller");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name(account));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert!(c["resources"]["limits"]["memory"].is_string());

    // The arguments are ones the binary takes (`crd` exits after parsing).
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let parsed = run(Command::new(binary("rollout-controller"))
        .args(&args)
        .arg("crd"));
    assert!(
        parsed.code == 0,
        "the controller rejects its manifest's args {args:?}: {}",
        parsed.stderr
    );
    let env: BTreeSet<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains("POD_NAME") && env.contains("POD_NAMESPACE"),
        "leader identity"
    );

    for kind in [
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(of_kind(&objects, kind).count() == 1, "one {kind}");
    }
}

/// Each PrometheusRule, as a plain rules file `promtool check rules` reads.
fn rule_files(objects: &[Value], dir: &Path) -> Vec<(PathBuf, String)> {
    of_kind(objects, "PrometheusRule")
        .map(|rule| {
            let path = dir.join(format!("{}.yml", name(rule)));
            std::fs::write(&path, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
            let exprs = rule["spec"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_array().unwrap())
                .map(|r| r["expr"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join("\n");
            (path, exprs)
        })
        .collect()
}

#[test]
fn alert_rules_are_valid_promql_on_metrics_that_exist() {
    let promtool = which("promtool").expect("promtool is not installed: run tests/setup");
    let scratch = tempfile::tempdir().unwrap();
    let controller = render(&repo().join("manifests/controller"));
    let staging = example("staging");
    let mut rules = rule_files(&controller, scratch.path());
    rules.extend(rule_files(&staging, scratch.path()));
    assert_eq!(rules.len(), 2);
    for (path, _) in &rules {
        let checked = run(Command::new(&promtool).arg("check").arg("rules").arg(path));
        assert!(
            checked.code == 0,
            "{}:\n{}{}",
            path.display(),
            checked.stdout,
            checked.stderr
        );
    }

    // The controller's alerts use series its /metrics really exposes.
    let metrics = rollout_controller::telemetry::Metrics::default();
    let rollout: Rollout =
        serde_json::from_value(find(&staging, "Rollout", "backend").clone()).unwrap();
    let status = rollout_core::types::RolloutStatus {
        phase: Some(rollout_core::types::Phase::Degraded),
        ..Default::default()
    };
    metrics.record_rollout(&rollout, &status);
    metrics.observe_reconcile(std::time::Duration::from_millis(5), true);
    let exposed = metrics.render();
    let controller_exprs = &rules[0].1;
    let mut used = 0;
    for word in controller_exprs.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word.starts_with("gantry_rollout_controller_") {
            assert!(
                exposed.contains(&format!("\n{word}")) || exposed.contains(&format!("\n{word}{{")),
                "the alert uses {word}, which the controller does not expose:\n{exposed}"
            );
            used += 1;
        }
    }
    assert!(used >= 3);
    // And the backend's alerts use the series the example backend exports.
    let backend = std::fs::read_to_string(repo().join("examples/backend/server.js")).unwrap();
    for series in ["http_requests_total", "http_request_duration_seconds"] {
        assert!(rules[1].1.contains(series) && backend.contains(&format!("'{series}'")));
    }
}

// ---------------------------------------------------------------------------
// gantry bump on the example overlays

/// The rendered image of every container, by "Kind/name".
fn images(objects: &[Value]) -> BTreeMap<String, String> {
    objects
        .iter()
        .filter_map(|o| {
            let containers = o["spec"]["template"]["spec"]["containers"].as_array()?;
            Some((
                format!("{}/{}", o["kind"].as_str().unwrap(), name(o)),
                containers[0]["image"].as_str().unwrap().to_string(),
            ))
        })
        .collect()
}

/// Every object with its container images blanked, to compare the rest.
fn without_images(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            if let Some(cs) = o["spec"]["template"]["spec"]["containers"].as_array_mut() {
                for c in cs {
                    c["image"] = Value::Null;
                }
            }
            o
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(target).unwrap();
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn gantry_bump_changes_exactly_the_rendered_images() {
    let scratch = tempfile::tempdir().unwrap();
    let example = scratch.path().join("example");
    copy_tree(&repo().join("manifests/example"), &example);
    let staging = example.join("overlays/staging");
    let before = render(&staging);

    let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/webapp";
    let digest = format!("sha256:{}", "ab".repeat(32));
    let bumped = run(gantry().current_dir(&example).args([
        "bump",
        "-f",
        "overlays/staging/kustomization.yaml",
        "-i",
        &format!("frontend={ecr}/frontend:1.5.0@{digest}"),
        "-i",
        "backend=*:1.5.0",
    ]));
    assert!(bumped.code == 0, "{}", bumped.stderr);
    let after = render(&staging);

    let (old, new) = (images(&before), images(&after));
    assert_eq!(old["Deployment/frontend"], format!("{ecr}/frontend:1.4.0"));
    assert_eq!(
        new["Deployment/frontend"],
        format!("{ecr}/frontend:1.5.0@{digest}")
    );
    assert_eq!(old["Rollout/backend"], format!("{ecr}/backend:1.4.0"));
    assert_eq!(new["Rollout/backend"], format!("{ecr}/backend:1.5.0"));
    let changed: Vec<&String> = old.keys().filter(|k| old[*k] != new[*k]).collect();
    assert_eq!(changed, ["Deployment/frontend", "Rollout/backend"]);
    assert_eq!(
        without_images(&before),
        without_images(&after),
        "nothing else changes"
    );

    // The edit itself: only the image lines of the kustomization moved.
    let original = std::fs::read_to_string(
        repo().join("manifests/example/overlays/staging/kustomization.yaml"),
    )
    .unwrap();
    let edited = std::fs::read_to_string(staging.join("kustomization.yaml")).unwrap();
    let differing: Vec<(&str, &str)> = original
        .lines()
        .zip(edited.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        differing,
        [
            ("    newTag: \"1.4.0\"", "    newTag: \"1.5.0\""),
            ("    newTag: \"1.4.0\"", "    newTag: \"1.5.0\""),
        ]
    );
    assert_eq!(
        edited.lines().count(),
        original.lines().count() + 1,
        "+ the digest line"
    );

    // --dir reaches both overlays: the backend moves in staging and prod.
    let prod_before = images(&render(&example.join("overlays/prod")));
    let bumped = run(gantry().current_dir(&example).args([
        "bump",
        "--dir",
        "overlays",
        "-i",
        "backend=*:2.0.0",
    ]));
    assert!(bumped.code == 0, "{}", bumped.stderr);
    let prod_after = images(&render(&example.join("overlays/prod")));
    assert_eq!(
        prod_before["Rollout/backend"],
        format!("{ecr}/backend:1.3.2")
    );
    assert_eq!(
        prod_after["Rollout/backend"],
        format!("{ecr}/backend:2.0.0")
    );
    assert_eq!(
        prod_after["Deployment/frontend"],
        prod_before["Deployment/frontend"]
    );
    assert_eq!(
        images(&render(&staging))["Rollout/backend"],
        format!("{ecr}/backend:2.0.0")
    );
}
