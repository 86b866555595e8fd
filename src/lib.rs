//! The modules behind the `alipaylife` binary. A library only so that the fuzz targets
//! (`fuzz/`) can reach the parsers; the binary in `main.rs` is the one consumer that matters.
#![forbid(unsafe_code)]

pub mod cert;
pub mod checkpoint;
pub mod cli;
pub mod cmd;
pub mod credentials;
pub mod emulator;
pub mod error;
pub mod export;
pub mod formats;
pub mod gateway;
pub mod interrupt;
pub mod keys;
pub mod output;
pub mod response;
pub mod send;
pub mod sign;
