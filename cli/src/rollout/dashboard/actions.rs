//! The dashboard's buttons: the operations of `gantry rollout`, by the name
//! in their URL. Sent with the user's own credentials, as the CLI sends
//! them (`cluster::act`).

use jiff::Timestamp;
use rollout_core::ops::Op;

pub struct Action {
    /// In the URL: `/api/rollouts/{ns}/{name}/{slug}`.
    pub slug: &'static str,
    pub label: &'static str,
    /// What the confirmation asks, before the Rollout's name.
    pub confirm: &'static str,
    pub op: fn(Timestamp) -> Op,
}

pub const ACTIONS: [Action; 7] = [
    Action {
        slug: "promote",
        label: "Promote",
        confirm: "End the current pause of",
        op: |_| Op::Promote { full: false },
    },
    Action {
        slug: "promote-full",
        label: "Promote full",
        confirm: "Skip every remaining step and analysis (100% now) of",
        op: |_| Op::Promote { full: true },
    },
    Action {
        slug: "abort",
        label: "Abort",
        confirm: "Send all traffic back to stable and stop the canary of",
        op: |_| Op::Abort,
    },
    Action {
        slug: "retry",
        label: "Retry",
        confirm: "Start the aborted canary again from its first step:",
        op: |_| Op::Retry,
    },
    Action {
        slug: "pause",
        label: "Pause",
        confirm: "Hold where it is (spec.paused):",
        op: |_| Op::Pause,
    },
    Action {
        slug: "resume",
        label: "Resume",
        confirm: "Undo the pause (spec.paused) of",
        op: |_| Op::Resume,
    },
    Action {
        slug: "restart",
        label: "Restart",
        confirm: "Restart every pod, one at a time, of",
        op: |at| Op::Restart { at },
    },
];

pub fn by_slug(slug: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.slug == slug)
}
