//! One integration-test crate: every test runs the built binary, usually against the emulator
//! (also the built binary) over loopback.

mod util;

// The bad-input corpus: exact messages and exit codes, nothing left behind.
mod bad_inputs;
// Certificate mode: SNs sent, checked and verified.
mod certs;
// The emulator as a server: malformed HTTP, slow clients, floods.
mod emulator;
// The command line itself: help, version, usage errors, exit codes.
mod cli;
// A full disk: clear error, valid checkpoint, resume once there is space.
mod disk_full;
// `export` against the emulator: exact sets, OpenID, end styles, failures.
mod export;
// `export --format`: xlsx, txt, jsonl, ums-json, BOM, UMS layouts, flag checks.
mod formats;
// `send`: batches, pacing, journal and resume against the emulator's delivery log.
mod send;
// Crash-safe exports: SIGKILL and --resume, Ctrl-C.
mod resume;
// No key material in any output.
mod secrets;
// `keygen`, `check`, the pushtools command line.
mod setup;
