//! One file per subcommand: its argh `Args` (flags and help) and its `run`.
pub mod alipay;
pub mod check;
pub mod demo;
pub mod emulate;
pub mod export;
pub mod keygen;
pub mod send;
