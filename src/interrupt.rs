//! Ctrl-C and SIGTERM: one handler for the whole process, whose effect the running command sets.
//! An export exits at once (its checkpoint only ever points at durable pages); a send first lets
//! the requests in flight finish and records their outcomes (a request cut off would leave its
//! row `unknown`), and exits at once on a second interrupt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

enum Mode {
    /// The default signal behaviour: the process ends (exit 130).
    Default,
    /// Print the message and exit 130.
    Exit(String),
    /// Set the flag and print `first`; a second interrupt prints `again` and exits 130.
    Drain { first: String, again: String },
}

static MODE: Mutex<Mode> = Mutex::new(Mode::Default);
static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

fn install() {
    INSTALL.call_once(|| {
        // ctrlc runs this on a thread of its own, not in signal context: locking is fine.
        let _ = ctrlc::set_handler(|| {
            let mode = MODE.lock().unwrap_or_else(|e| e.into_inner());
            match &*mode {
                Mode::Default => std::process::exit(130),
                Mode::Exit(message) => {
                    eprintln!("\nalipaylife: {message}");
                    std::process::exit(130);
                }
                Mode::Drain { first, again } => {
                    if REQUESTED.swap(true, Ordering::SeqCst) {
                        eprintln!("\nalipaylife: {again}");
                        std::process::exit(130);
                    }
                    eprintln!("\nalipaylife: {first}");
                }
            }
        });
    });
}

fn set(mode: Mode) {
    install();
    *MODE.lock().unwrap_or_else(|e| e.into_inner()) = mode;
}

/// From now on an interrupt prints `message` and exits 130.
pub fn exit_with(message: String) {
    set(Mode::Exit(message));
}

/// From now on the first interrupt only raises the flag returned (and prints `first`); the second
/// prints `again` and exits 130. The flag starts lowered.
pub fn drain(first: String, again: String) -> &'static AtomicBool {
    REQUESTED.store(false, Ordering::SeqCst);
    set(Mode::Drain { first, again });
    &REQUESTED
}

/// Back to exiting 130 at once, silently (after a drain: nothing is in flight any more).
pub fn reset() {
    set(Mode::Default);
}
