//! Compiles `src/guard/flat.c`, the guard's parse-tree writer, against the
//! libpg_query sources that the `pg_query` crate ships and links.
//!
//! The sources are found, in order, at `PGTP_LIBPG_QUERY_DIR`, in Cargo's
//! registry (`$CARGO_HOME/registry/src/*/pg_query-<version>/libpg_query`) and
//! in `vendor/pg_query/libpg_query` (after `cargo vendor`). The version is
//! read from the exact pin (`pg_query = "=x.y.z"`) in Cargo.toml, so the
//! generated walker code always matches the library that is linked.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/guard/flat.c");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=PGTP_LIBPG_QUERY_DIR");
    let version = pinned_pg_query_version();
    let dir = match find_libpg_query(&version) {
        Some(d) => d,
        None => panic!(
            "libpg_query sources of pg_query {version} not found; set PGTP_LIBPG_QUERY_DIR to its \
             libpg_query directory"
        ),
    };
    let mut build = cc::Build::new();
    build
        .file("src/guard/flat.c")
        .include(&dir)
        .include(dir.join("vendor"))
        .include(dir.join("src/postgres/include"))
        .include(dir.join("src/include"))
        .include(dir.join("src"))
        .warnings(false)
        .flag_if_supported("-fno-strict-aliasing")
        .flag_if_supported("-fwrapv");
    // The same switch the pg_query crate uses for the library itself.
    if env::var("PROFILE").as_deref() == Ok("debug") || env::var("DEBUG").as_deref() == Ok("1") {
        build.define("USE_ASSERT_CHECKING", None);
    }
    build.compile("pgtp_flat");
}

/// The version in `pg_query = "=x.y.z"` of Cargo.toml; an exact pin is
/// required because flat.c compiles against that release's generated code.
fn pinned_pg_query_version() -> String {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap_or_default();
    for line in manifest.lines() {
        if let Some(rest) = line.trim().strip_prefix("pg_query = \"=") {
            if let Some(v) = rest.split('"').next() {
                return v.to_owned();
            }
        }
    }
    panic!("Cargo.toml must pin pg_query exactly: pg_query = \"=x.y.z\"");
}

fn find_libpg_query(version: &str) -> Option<PathBuf> {
    let marker = |d: &Path| d.join("src/include/pg_query_outfuncs_defs.c").is_file();
    if let Some(d) = env::var_os("PGTP_LIBPG_QUERY_DIR").map(PathBuf::from) {
        return marker(&d).then_some(d);
    }
    let crate_dir = format!("pg_query-{version}");
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        if let Ok(registries) = std::fs::read_dir(home.join("registry/src")) {
            for reg in registries.flatten() {
                let d = reg.path().join(&crate_dir).join("libpg_query");
                if marker(&d) {
                    return Some(d);
                }
            }
        }
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    let vendored = manifest.join("vendor/pg_query/libpg_query");
    marker(&vendored).then_some(vendored)
}
