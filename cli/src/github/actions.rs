//! GitHub Actions integration: step outputs, the job summary, and error
//! annotations. Everything here is a no-op outside Actions.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Appends `name=value` outputs to `$GITHUB_OUTPUT`, using the heredoc form
/// for multi-line values.
pub fn set_outputs(outputs: &[(&str, String)]) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let mut text = String::new();
    for (name, value) in outputs {
        if value.contains('\n') {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let mut delimiter = format!("gantry_{}_{}", std::process::id(), nanos.as_nanos());
            while value.contains(&delimiter) {
                delimiter.push('_');
            }
            text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        } else {
            text.push_str(&format!("{name}={value}\n"));
        }
    }
    append(Path::new(&path), &text)
}

/// Appends Markdown to `$GITHUB_STEP_SUMMARY`.
pub fn append_summary(markdown: &str) -> std::io::Result<()> {
    match std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        Some(path) => append(Path::new(&path), markdown),
        None => Ok(()),
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// True inside a GitHub Actions job.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// An `::error file=…,line=…,col=…::message` workflow command.
pub fn error_annotation(
    message: &str,
    file: Option<&Path>,
    position: Option<(usize, usize)>,
) -> String {
    let mut props = Vec::new();
    if let Some(file) = file {
        props.push(format!("file={}", escape_property(&file.to_string_lossy())));
    }
    if let Some((line, col)) = position {
        props.push(format!("line={line}"));
        props.push(format!("col={col}"));
    }
    let props = if props.is_empty() {
        String::new()
    } else {
        format!(" {}", props.join(","))
    };
    format!("::error{props}::{}", escape_data(message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_workflow_command_syntax() {
        let a = error_annotation(
            "bad: 50%\nnext",
            Some(Path::new("a,b:c.yaml")),
            Some((3, 7)),
        );
        assert_eq!(
            a,
            "::error file=a%2Cb%3Ac.yaml,line=3,col=7::bad: 50%25%0Anext"
        );
        assert_eq!(error_annotation("x", None, None), "::error::x");
    }
}
