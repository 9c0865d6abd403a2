//! Inputs the fuzz targets (fuzz/) found, kept as regression tests.

use nur_module::abi::{self, AbiError};

/// smith_connection: a wasm-smith module using the compact imports proposal
/// passed the ABI check, then wasmer refused to compile it ("compact imports
/// proposal disabled"): the operator would have rolled out a module every
/// worker refuses. The check now validates with the worker's features.
#[test]
fn a_module_using_a_proposal_the_worker_cannot_compile_is_refused() {
    let binary = include_bytes!("data/compact-imports.wasm");
    let err = abi::check(binary).unwrap_err();
    assert!(matches!(err, AbiError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("compact imports"), "{err}");

    let tail_call = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (func $f (param i32) (result i32) (return_call $f (local.get 0)))
          (func (export "alloc") (param i32) (result i32) (call $f (local.get 0)))
          (func (export "poll_stream") (param i32 i32)))"#,
    )
    .unwrap();
    let err = abi::check(&tail_call).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid WebAssembly: ") && err.contains("tail call"),
        "{err}"
    );
}

/// smith_connection: a module with an `exnref` element segment (exception
/// handling) passed the check, then wasmer failed to translate it
/// ("unsupported element type in element section: exnref"). Exception
/// handling is outside the check's features now.
#[test]
fn exception_handling_is_refused_by_the_check() {
    let binary = include_bytes!("data/exnref-elements.wasm");
    let err = abi::check(binary).unwrap_err();
    assert!(matches!(err, AbiError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("exception"), "{err}");
}
