//! The ABI check on arbitrary bytes: binary, WAT text or zstd, exactly as a
//! worker or the operator reads an object from storage. Never a panic; an
//! accepted module's summary agrees with the rules of the ABI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nur_module::abi::{self, AbiError};
use nur_module::{LoadError, Module, Source};

fuzz_target!(|data: &[u8]| {
    // The check alone, on the raw bytes.
    match abi::check(data) {
        Ok(summary) => assert_summary(&summary),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // The whole path of a fetched object: zstd detection, WAT, check.
    let source = Source::parse("fuzz.wasm").expect("a plain path parses");
    match Module::from_stored(source, data.to_vec()) {
        Ok(module) => {
            assert_summary(&module.summary);
            assert_eq!(module.size, data.len() as u64);
            assert_eq!(module.sha256, nur_module::sha256_hex(data));
            assert!(
                abi::check(&module.binary).is_ok(),
                "checked twice, same answer"
            );
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("fuzz.wasm: "), "{text}");
            if let LoadError::Abi {
                error: AbiError::Violations(v),
                ..
            } = &e
            {
                assert!(!v.is_empty(), "a refusal names at least one rule");
            }
        }
    }
});

fn assert_summary(summary: &nur_module::Summary) {
    let host = abi::host_functions();
    for import in &summary.imports {
        assert!(
            host.iter()
                .any(|(name, sig)| *name == import.name && *sig == import.signature),
            "accepted an import the host does not provide: {import:?}"
        );
    }
    for (name, kind) in [
        ("memory", "memory"),
        ("alloc", "function"),
        ("poll_stream", "function"),
    ] {
        assert!(
            summary.exports.iter().any(|(n, k)| n == name && *k == kind),
            "accepted a module without {name}: {summary:?}"
        );
    }
    if let Some(max) = summary.memory.maximum_pages {
        assert!(max >= summary.memory.initial_pages);
    }
}
