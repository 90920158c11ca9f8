//! Ctrl-C and SIGTERM during `convnet train`: the first asks the run to stop after the step in
//! progress (it saves its position and ends with 130 or 143, as a shell expects of a process
//! ended by SIGINT or SIGTERM); a second one ends the process at once, with the same code.
//! Every file is written atomically, so even then the last checkpoint is whole, old or new.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[cfg(unix)]
use signal_hook::consts::{SIGINT, SIGTERM};

/// The handlers, installed for the rest of the process.
pub struct StopOnSignal {
    requested: Arc<AtomicBool>,
    /// The number of the last signal that arrived (0: none).
    signal: Arc<AtomicUsize>,
}

impl StopOnSignal {
    #[cfg(unix)]
    pub fn install() -> convnet::Result<StopOnSignal> {
        use signal_hook::flag;
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let failed = |e: std::io::Error| convnet::Error::invalid("signal handlers", e.to_string());
        for sig in [SIGINT, SIGTERM] {
            // A SIGINT ignored from the start (`nohup`, `cmd &` in a script) stays ignored: a
            // Ctrl-C meant for the foreground job must not stop this run.
            if sig == SIGINT && is_ignored(sig) {
                continue;
            }
            // The order matters: the shutdown looks at the flag before this signal sets it, so
            // it acts only on a second signal.
            flag::register_conditional_shutdown(sig, exit_status(sig), Arc::clone(&requested)).map_err(failed)?;
            flag::register(sig, Arc::clone(&requested)).map_err(failed)?;
            flag::register_usize(sig, Arc::clone(&signal), sig as usize).map_err(failed)?;
        }
        Ok(StopOnSignal { requested, signal })
    }

    #[cfg(not(unix))]
    pub fn install() -> convnet::Result<StopOnSignal> {
        Ok(StopOnSignal { requested: Arc::new(AtomicBool::new(false)), signal: Arc::new(AtomicUsize::new(0)) })
    }

    /// The flag the training loop looks at after every step.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.requested)
    }

    /// The exit code of a run that a signal stopped: 128 + the signal's number.
    pub fn exit_code(&self) -> ExitCode {
        #[cfg(unix)]
        let status = exit_status(self.signal.load(Ordering::SeqCst) as i32);
        #[cfg(not(unix))]
        let status = {
            let _ = self.signal.load(Ordering::SeqCst);
            130
        };
        ExitCode::from(status as u8)
    }
}

/// Whether the process started with `sig` ignored (inherited from its parent).
#[cfg(unix)]
fn is_ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`, a
    // zero-initialised plain C struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// 130 for SIGINT, 143 for SIGTERM: what a shell reports for a process those signals ended.
#[cfg(unix)]
fn exit_status(sig: i32) -> i32 {
    if sig == SIGTERM {
        143
    } else {
        130
    }
}
