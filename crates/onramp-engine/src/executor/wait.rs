//! `human`, `signal` and `delay` steps: nothing to run, only something to wait for.
//!
//! Each returns [`StepOutcome::Waiting`] saying what ends the wait: a human task to open and
//! assign, a signal to take (or a timeout), a time. The completer commits the wait, then
//! assigns the task or takes an early signal; the scheduler's timers end delays and timeouts.

use onramp_config::TaskKind;
use onramp_core::outcome::{HumanTask, StepOutcome, WaitFor};
use onramp_core::time::Millis;

/// The wait of a `human`, `signal` or `delay` step that starts at `now`; `None` for other kinds.
pub fn wait_for(kind: &TaskKind, now: Millis) -> Option<StepOutcome> {
    let wait = match kind {
        TaskKind::Human {
            skill,
            duration,
            due_within,
        } => WaitFor {
            task: Some(HumanTask {
                skill: skill.clone(),
                duration: *duration,
                due_by: due_within.map(|d| now.plus(d)),
            }),
            ..WaitFor::default()
        },
        TaskKind::Signal { signal, timeout } => WaitFor {
            until: timeout.map(|t| now.plus(t)),
            signal: Some(signal.to_string()),
            ..WaitFor::default()
        },
        TaskKind::Delay { duration } => WaitFor {
            until: Some(now.plus(*duration)),
            ..WaitFor::default()
        },
        _ => return None,
    };
    Some(StepOutcome::Waiting(wait))
}
