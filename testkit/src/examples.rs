//! The example modules built into `examples/build/` (examples/build.sh, or
//! `make test`).

use std::path::PathBuf;

/// The path of a built example, e.g. `path("echo.wasm")`; panics when it is
/// missing.
pub fn path(file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/build")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: build the examples first (examples/build.sh, or make test)",
        path.display()
    );
    path
}

/// The bytes of a built example.
pub fn read(file: &str) -> Vec<u8> {
    let path = path(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
