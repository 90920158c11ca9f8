//! Test hook (used by tests/stop_resume.rs, harmless otherwise): when the environment variable
//! `CONVNET_TEST_STEP_HANDSHAKE` is `1`, the training loop stops after every step (after the
//! optimiser's update, before it looks for a stop request or a checkpoint that is due), prints
//! [`STEP_HANDSHAKE_PREFIX`] and the step's whole-run index (from 0) as one line on stderr, and
//! waits for a line (or the end) on stdin. A test that reads the line knows exactly where the run
//! is: it can send SIGINT, SIGTERM or SIGKILL there, with no clock involved. The same protocol
//! as the write handshake of `crate::fs` (`crate::test_hooks`).

/// The variable that turns the hook on.
#[doc(hidden)]
pub const STEP_HANDSHAKE_ENV: &str = "CONVNET_TEST_STEP_HANDSHAKE";

/// The start of the line: "convnet-test: after step 17".
#[doc(hidden)]
pub const STEP_HANDSHAKE_PREFIX: &str = "convnet-test: after step ";

/// Whether the hook is on, read once per run.
pub(crate) struct StepHandshake {
    on: bool,
}

impl StepHandshake {
    pub fn from_env() -> StepHandshake {
        StepHandshake { on: crate::test_hooks::is_on(STEP_HANDSHAKE_ENV) }
    }

    /// Says that the step `global_step` is done and waits for stdin, when on.
    pub fn after_step(&self, global_step: usize) {
        if self.on {
            crate::test_hooks::say_and_wait(format_args!("{STEP_HANDSHAKE_PREFIX}{global_step}"));
        }
    }
}
