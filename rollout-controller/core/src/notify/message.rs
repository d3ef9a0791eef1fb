//! What each kind of destination receives for an occurrence.

use serde_json::{Value, json};

use super::config::Kind;
use super::{Occurrence, Trigger};

/// The JSON body for `kind`.
pub fn body(kind: &Kind, o: &Occurrence) -> Value {
    match kind {
        Kind::Webhook(_) => webhook(o),
        Kind::Slack(_) => slack(o),
        Kind::Teams(_) => teams(o),
        Kind::GoogleChat(_) => json!({ "text": format!("*{}*\n{}", title(o), o.summary) }),
    }
}

/// `shop/backend: aborted`.
fn title(o: &Occurrence) -> String {
    format!(
        "Rollout {}/{}: {}",
        o.namespace,
        o.rollout,
        o.trigger.name()
    )
}

/// Every field, for machines.
fn webhook(o: &Occurrence) -> Value {
    json!({
        "trigger": o.trigger.name(),
        "id": o.key,
        "namespace": o.namespace,
        "rollout": o.rollout,
        "revision": o.revision,
        "step": o.step,
        "canaryWeight": o.canary_weight,
        "phase": o.phase,
        "summary": o.summary,
        "images": o.images,
        "time": o.at.to_string(),
    })
}

fn facts(o: &Occurrence) -> Vec<(&'static str, String)> {
    vec![
        (
            "Steps completed",
            o.step.clone().unwrap_or_else(|| "–".into()),
        ),
        ("Canary weight", format!("{}%", o.canary_weight)),
        ("Phase", o.phase.clone()),
        ("Images", o.images.join(", ")),
    ]
}

fn emoji(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::RolloutStarted => ":rocket:",
        Trigger::StepCompleted => ":white_check_mark:",
        Trigger::Paused => ":double_vertical_bar:",
        Trigger::AnalysisFailed | Trigger::Aborted | Trigger::Degraded => ":rotating_light:",
        Trigger::Completed => ":tada:",
    }
}

/// Block Kit: a header, the summary, the facts, the time; `text` for
/// notifications that show no blocks.
fn slack(o: &Occurrence) -> Value {
    let fields: Vec<Value> = facts(o)
        .into_iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
        .collect();
    json!({
        "text": format!("{}: {}", title(o), o.summary),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("{} {}", emoji(o.trigger), title(o)), "emoji": true}},
            {"type": "section", "text": {"type": "mrkdwn", "text": o.summary}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("revision `{}` · {}", o.revision, o.at)}]},
        ]
    })
}

/// An Office 365 connector card, as Teams incoming webhooks take it.
fn teams(o: &Occurrence) -> Value {
    let colour = match o.trigger {
        Trigger::AnalysisFailed | Trigger::Aborted | Trigger::Degraded => "D92D20",
        Trigger::Completed => "16A34A",
        _ => "2563EB",
    };
    let facts: Vec<Value> = facts(o)
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title(o),
        "themeColor": colour,
        "title": title(o),
        "text": o.summary,
        "sections": [{"facts": facts}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{Url, Value as Setting};

    fn occurrence() -> Occurrence {
        Occurrence {
            trigger: Trigger::Aborted,
            key: "aborted/abc/2026-01-01T00:00:00Z".into(),
            namespace: "shop".into(),
            rollout: "backend".into(),
            revision: "abc".into(),
            step: Some("2/4".into()),
            canary_weight: 0,
            phase: "Degraded".into(),
            summary: "aborted: all traffic back on stable".into(),
            images: vec!["shop/backend:1.5.0".into()],
            at: "2026-01-01T00:00:01Z".parse().unwrap(),
        }
    }

    #[test]
    fn each_kind_has_its_shape() {
        let url = || Url {
            url: Setting::Literal("x".into()),
        };
        let o = occurrence();
        let slack = body(&Kind::Slack(url()), &o);
        assert_eq!(slack["blocks"][0]["type"], "header");
        assert_eq!(
            slack["blocks"][0]["text"]["text"],
            ":rotating_light: Rollout shop/backend: aborted"
        );
        assert_eq!(
            slack["blocks"][2]["fields"][0]["text"],
            "*Steps completed*\n2/4"
        );
        assert_eq!(
            slack["text"],
            "Rollout shop/backend: aborted: aborted: all traffic back on stable"
        );
        let teams = body(&Kind::Teams(url()), &o);
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["sections"][0]["facts"][1]["value"], "0%");
        let chat = body(&Kind::GoogleChat(url()), &o);
        assert_eq!(
            chat["text"],
            "*Rollout shop/backend: aborted*\naborted: all traffic back on stable"
        );
    }
}
