//! The end-to-end scenarios on every server and mode (issue 9).
