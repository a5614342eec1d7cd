//! Fuzz target `jwt_claims`: see `fuzz/oracles.rs` for what it checks.
#![no_main]

#[path = "../oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracles::jwt_claims(data) {
        panic!("jwt_claims disagreement: {e}");
    }
});
