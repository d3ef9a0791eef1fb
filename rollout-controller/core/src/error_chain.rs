//! An error and its causes on one line. Generic: here because every Gantry
//! crate already depends on this one.

/// The error and its causes, deduplicated, joined by `": "` ("error
/// sending request" alone does not say that the connection was refused).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str, #[source] Option<Box<E>>);

    #[test]
    fn joins_causes_and_drops_echoes() {
        let refused = E("connection refused", None);
        let echo = E(
            "tcp connect error: connection refused",
            Some(Box::new(refused)),
        );
        let top = E("error sending request", Some(Box::new(echo)));
        assert_eq!(
            error_chain(&top),
            "error sending request: tcp connect error: connection refused"
        );
    }
}
