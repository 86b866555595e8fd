//! The template-message sender's core: batch files to messages (`encoding`, `batch`), pacing
//! (`pace`), the crash-safe journal (`journal`), the worker pool (`engine`) and the report
//! (`report`). The command itself (flags, terminal, exit codes) is `cmd::send`.

pub mod batch;
pub mod encoding;
pub mod engine;
pub mod journal;
pub mod pace;
pub mod report;
