//! Criterion benchmark of the statement guard on the hot path.
fn main() {}
