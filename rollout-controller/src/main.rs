use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "rollout-controller {}: the controller for {}/{} Rollouts is not implemented yet (issue #4)",
        env!("CARGO_PKG_VERSION"),
        rollout_controller::GROUP,
        rollout_controller::VERSION
    );
    ExitCode::FAILURE
}
