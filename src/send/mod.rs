//! The template-message sender's core (batch parsing and validation, pacing, journal): being written.
