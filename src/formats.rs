//! Output formats for follower IDs (being written).
