//! `alipaylife send` against the emulator (being written).
