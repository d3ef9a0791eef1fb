//! One module per subcommand, as cargo's `commands/`: each owns its clap
//! arguments and an `exec` that does the work through the library's
//! concerns and returns the exit code. `delivery` holds the options bump and
//! promote share.

pub mod analysis;
pub mod bump;
pub mod delivery;
pub mod image;
pub mod promote;
pub mod rollout;

/// `KEY=VALUE`, for repeatable options (`--build-arg`, `--arg`).
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}
