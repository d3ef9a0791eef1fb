#![no_main]
//! An AnalysisTemplate's Prometheus query and conditions from any text
//! (three parts, split at the first two line breaks), resolved with a
//! plain and a Secret-backed argument, then judged against values of every
//! shape. Nothing panics; a resolved query has every `{{args.…}}`
//! substituted, and the query as logged never shows the Secret's value
//! unless the template itself spells it; a judgement is the same twice.

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rollout_core::analysis::{ArgContext, QueryValue, evaluate, literal_analysis, resolve};
use rollout_core::types::{AnalysisTemplateSpec, SecretKeyRef};
use serde_json::json;

const SECRET: &str = "s3cr3t-t0ken";

fuzz_target!(
    init: {
        // The code under test catches the expression engine's panics; the
        // default hook lets it (a panic that escapes still aborts).
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (query, success, failure) = (parts.next(), parts.next(), parts.next());
    let metric = json!({
        "name": "m", "interval": "1m",
        "successCondition": success, "failureCondition": failure,
        "provider": {"prometheus": {"address": "http://prometheus:9090", "query": query}}
    });
    let template = json!({
        "args": [{"name": "service"},
                 {"name": "token", "valueFrom": {"secretKeyRef": {"name": "prom", "key": "token"}}}],
        "metrics": [metric]
    });
    let Ok(spec) = serde_json::from_value::<AnalysisTemplateSpec>(template) else {
        return;
    };
    let templates = BTreeMap::from([("t".to_string(), spec)]);
    let mut analysis = literal_analysis("t", &[("service".into(), "backend".into())]);
    analysis.args.retain(|a| a.name == "service");
    let secrets = BTreeMap::from([(
        SecretKeyRef {
            name: "prom".into(),
            key: "token".into(),
        },
        SECRET.to_string(),
    )]);
    let ctx = ArgContext {
        rollout: None,
        stable_hash: Some("stable"),
        latest_hash: Some("canary"),
        secrets: Some(&secrets),
        alb: None,
    };
    let Ok(metrics) = resolve("spec", &analysis, &templates, &ctx) else {
        return;
    };
    let query = query.unwrap_or_default();
    for m in &metrics {
        assert!(
            !m.display_query.contains("{{"),
            "unsubstituted argument in {:?} from {query:?}",
            m.display_query
        );
        assert!(
            !m.display_query.contains(SECRET) || query.contains(SECRET),
            "the Secret's value shows in the logged query {:?} (from {query:?})",
            m.display_query
        );
        for value in values() {
            let verdict = evaluate(m, &value);
            assert_eq!(verdict, evaluate(m, &value), "{value:?}");
        }
    }
});

/// A result of every shape, empty and NaN ones among them.
fn values() -> Vec<QueryValue> {
    vec![
        QueryValue::Scalar(0.01),
        QueryValue::Scalar(f64::NAN),
        QueryValue::Vector(vec![]),
        QueryValue::Vector(vec![0.5, 7.0]),
        QueryValue::Matrix(vec![vec![1.0, 2.0], vec![]]),
        QueryValue::String("up".into()),
        QueryValue::Json(json!({"ok": true, "rate": [0.1]})),
    ]
}
