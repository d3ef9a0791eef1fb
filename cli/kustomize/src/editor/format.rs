//! New YAML text for an entry: block or flow, each value plain when YAML
//! would read it back as the same string, else double-quoted.

use crate::image_ref::ImageEntry;

pub(super) fn entry_fields(entry: &ImageEntry) -> Vec<(&'static str, &str)> {
    let optional = [
        ("newName", &entry.new_name),
        ("newTag", &entry.new_tag),
        ("digest", &entry.digest),
    ];
    std::iter::once(("name", entry.name.as_str()))
        .chain(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
        )
        .collect()
}

/// `first_lead` is what precedes the first key (`- ` and its indentation).
pub(super) fn block_entry(entry: &ImageEntry, first_lead: &str, key_indent: &str) -> Vec<String> {
    entry_fields(entry)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let lead = if i == 0 { first_lead } else { key_indent };
            format!("{lead}{k}: {}", plain_or_quoted(v))
        })
        .collect()
}

pub(super) fn flow_entry(entry: &ImageEntry) -> String {
    let body: Vec<String> = entry_fields(entry)
        .into_iter()
        .map(|(k, v)| format!("{k}: {}", plain_or_quoted(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

pub(super) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Plain when the text reads back as the same string in YAML 1.1 and 1.2
/// (so `1.10` or `yes` do not turn into a number or a bool), else quoted.
pub(super) fn plain_or_quoted(s: &str) -> String {
    if is_plain_string(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

pub(super) fn is_plain_string(s: &str) -> bool {
    let safe_char = |c: char| c.is_ascii_alphanumeric() || "._/:@+-".contains(c);
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphanumeric() || first == '_' || first == '/')
        || !s.chars().all(safe_char)
        || s.ends_with(':')
    {
        return false;
    }
    const SPECIAL: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null"];
    if SPECIAL.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    !looks_numeric(s) && !looks_like_date(s)
}

/// Integers, floats, hex/octal/binary, and YAML 1.1 sexagesimal (`1:30`).
pub(super) fn looks_numeric(s: &str) -> bool {
    let body = s.trim_start_matches(['+', '-']).replace('_', "");
    if body.is_empty() {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    if ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    if body.split(':').count() > 1
        && body
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
    {
        return true;
    }
    body.parse::<f64>().is_ok() && !lower.contains("inf") && !lower.contains("nan")
        || lower == ".inf"
        || lower == ".nan"
}

pub(super) fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}
