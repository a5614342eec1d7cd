//! Fuzz target `options`: see `fuzz/oracles.rs` for what it checks.
#![no_main]

#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracles::options(data) {
        panic!("options disagreement: {e}");
    }
});
