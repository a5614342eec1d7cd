//! Fuzz target `first_keyword`: see `fuzz/oracles.rs` for what it checks.
#![no_main]

#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracles::first_keyword(data) {
        panic!("first_keyword disagreement: {e}");
    }
});
