//! The handshake that the test hooks share (the write handshake of `crate::fs`, the step
//! handshake of `train::step_handshake`): when its environment variable is `1`, the process
//! says where it is in one line on stderr and waits for a line (or the end) on stdin, so that a
//! test reading stderr knows exactly where the process stands when it answers, signals or kills
//! it: no clock, no polling. Harmless otherwise.

/// Whether the hook named by the environment variable `env` is on.
pub(crate) fn is_on(env: &str) -> bool {
    std::env::var(env).is_ok_and(|v| v.trim() == "1")
}

/// Prints `line` on stderr and waits for a line on stdin.
pub(crate) fn say_and_wait(line: std::fmt::Arguments) {
    eprintln!("{line}");
    let _ = std::io::stdin().read_line(&mut String::new());
}
