//! The Nur function ABI, version 1, as a check over a module's bytes.
//!
//! Over 400 lines on purpose: each rule, its message and its unit test
//! belong together (the tests are the last 200 lines).
//!
//! A module may import only `nur.nur_send`, `nur.nur_log` and `nur.nur_end`
//! with their exact signatures, and must export `memory`, `alloc` and
//! `poll_stream` with theirs (`_initialize`, when exported, takes and returns
//! nothing). Where WASI is allowed, a module that exports `_start` and
//! neither `alloc` nor `poll_stream` is a *command* instead ([`Kind`]): it
//! runs once per connection, stdin and stdout being the connection. [`check`] validates the module with wasmparser and returns a
//! [`Summary`], or every rule the module breaks.
//!
//! Where WASI preview 1 is allowed ([`allow_wasi_preview1`], which the
//! worker, `nur build` and the operator call at start; [`check_with`] for
//! one check), functions imported from
//! `wasi_snapshot_preview1` pass too: those the worker implements
//! ([`wasi_functions`]) must have their preview 1 signatures, any other is
//! listed in [`Summary::wasi`] as one that answers `ENOSYS`. Tables,
//! memories and globals from it are refused, and so is every other module.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmparser::types::{CoreTypeId, EntityType};
use wasmparser::{FuncType, ValType, Validator, WasmFeatures};

/// The import module every host function comes from.
pub const IMPORT_MODULE: &str = "nur";

/// A function signature of the ABI, written like `(i32, i32) -> ()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    params: Vec<ValType>,
    results: Vec<ValType>,
}

impl Signature {
    fn new(params: &[ValType], results: &[ValType]) -> Self {
        Self {
            params: params.to_vec(),
            results: results.to_vec(),
        }
    }

    fn of(ty: &FuncType) -> Self {
        Self::new(ty.params(), ty.results())
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |types: &[ValType]| {
            types
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "({}) -> ({})", list(&self.params), list(&self.results))
    }
}

/// The WASI import module whose functions are allowed where WASI is.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Whether [`check`] allows WASI preview 1 imports in this process.
static WASI_PREVIEW1: AtomicBool = AtomicBool::new(false);

/// Lets [`check`] (and so [`crate::load`]) accept imports from
/// `wasi_snapshot_preview1` in this process from now on: `nur-worker`,
/// which provides them, `nur build` and the operator call it at start. A
/// process that does not (a library's tests) still refuses them.
pub fn allow_wasi_preview1() {
    WASI_PREVIEW1.store(true, Ordering::Relaxed);
}

/// What one check allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Functions imported from `wasi_snapshot_preview1` pass.
    pub wasi_preview1: bool,
}

/// The `wasi_snapshot_preview1` functions the worker implements, with their
/// preview 1 signatures. Any other function of that module is satisfied
/// with one that returns `ENOSYS` (its signature unchecked).
pub fn wasi_functions() -> [(&'static str, Signature); 18] {
    use ValType::{I32, I64};
    [
        ("fd_write", Signature::new(&[I32, I32, I32, I32], &[I32])),
        ("fd_read", Signature::new(&[I32, I32, I32, I32], &[I32])),
        ("fd_close", Signature::new(&[I32], &[I32])),
        ("fd_fdstat_get", Signature::new(&[I32, I32], &[I32])),
        ("fd_prestat_get", Signature::new(&[I32, I32], &[I32])),
        ("fd_seek", Signature::new(&[I32, I64, I32, I32], &[I32])),
        ("clock_time_get", Signature::new(&[I32, I64, I32], &[I32])),
        ("clock_res_get", Signature::new(&[I32, I32], &[I32])),
        ("random_get", Signature::new(&[I32, I32], &[I32])),
        ("args_sizes_get", Signature::new(&[I32, I32], &[I32])),
        ("args_get", Signature::new(&[I32, I32], &[I32])),
        ("environ_sizes_get", Signature::new(&[I32, I32], &[I32])),
        ("environ_get", Signature::new(&[I32, I32], &[I32])),
        ("proc_exit", Signature::new(&[I32], &[])),
        ("sched_yield", Signature::new(&[], &[I32])),
        ("poll_oneoff", Signature::new(&[I32, I32, I32, I32], &[I32])),
        ("fd_fdstat_set_flags", Signature::new(&[I32, I32], &[I32])),
        (
            "fd_prestat_dir_name",
            Signature::new(&[I32, I32, I32], &[I32]),
        ),
    ]
}

/// Whether the worker implements `name` of `wasi_snapshot_preview1`
/// (every name not in [`wasi_functions`] answers `ENOSYS`).
pub fn wasi_provided(name: &str) -> bool {
    wasi_functions().iter().any(|(n, _)| *n == name)
}

/// The host functions a module may import from `"nur"`, with their signatures.
pub fn host_functions() -> [(&'static str, Signature); 3] {
    use ValType::I32;
    [
        ("nur_send", Signature::new(&[I32, I32], &[])),
        ("nur_log", Signature::new(&[I32, I32], &[])),
        ("nur_end", Signature::new(&[], &[])),
    ]
}

/// The functions a module must export, with their signatures.
pub fn required_functions() -> [(&'static str, Signature); 2] {
    use ValType::I32;
    [
        ("alloc", Signature::new(&[I32], &[I32])),
        ("poll_stream", Signature::new(&[I32, I32], &[])),
    ]
}

/// The WebAssembly features a module may use: those the worker's engine
/// (wasmer 7.4, Cranelift, on Linux) validates with and compiles. A module
/// using another proposal (tail calls, memory64, GC, compact imports...) is
/// refused here, by the operator as by `nur-worker check`, instead of
/// passing the check and then failing to compile in every worker. Exception
/// handling is left out too: wasmer validates it but cannot compile all of
/// it (an `exnref` element segment fails to translate).
///
/// Threads (shared memories, atomics, `memory.atomic.wait`) and multiple
/// memories are refused too, although wasmer runs them: a guest parked in
/// `memory.atomic.wait` is in host code, where the deadline interrupt must
/// not unwind it, and the per-instance memory limit is one exported memory
/// (plus tables), not one limit per memory.
pub const FEATURES: WasmFeatures = WasmFeatures::MVP
    .union(WasmFeatures::MUTABLE_GLOBAL)
    .union(WasmFeatures::SATURATING_FLOAT_TO_INT)
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::BULK_MEMORY)
    .union(WasmFeatures::REFERENCE_TYPES)
    .union(WasmFeatures::SIMD)
    .union(WasmFeatures::RELAXED_SIMD)
    .union(WasmFeatures::EXTENDED_CONST)
    .union(WasmFeatures::WIDE_ARITHMETIC);

/// The optional WASI-reactor initializer, called once per instance.
pub const INITIALIZE: &str = "_initialize";

/// The prefix of `nur-worker`'s environment variables that are its
/// function's WASI environment (`NUR_ENV_GREETING` is `GREETING`): how the
/// operator passes spec.env.
pub const FUNCTION_ENV_PREFIX: &str = "NUR_ENV_";

/// A WASI command's entry point, run once per connection.
pub const START: &str = "_start";

/// How the worker serves a module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// The Nur ABI: `alloc` and `poll_stream` called for every chunk, the
    /// answer sent with `nur_send`.
    #[default]
    Stream,
    /// A WASI command: `_start` runs once per connection, reading the
    /// client's bytes on stdin and answering on stdout.
    Command,
}

impl Kind {
    /// The name shown by `check` and on the NurFunction's status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "nur-abi",
            Self::Command => "wasi-command",
        }
    }
}

/// One rule of the ABI that a module breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An import from a module other than `"nur"` (WASI included, for now).
    ForeignImport { module: String, name: String },
    /// An import from `"nur"` that the host does not provide.
    UnknownImport { name: String },
    /// A host function imported with another signature.
    ImportSignature {
        name: String,
        expected: Signature,
        found: Signature,
    },
    /// A table, memory, global or tag imported from `"nur"`.
    ImportNotFunction { name: String, kind: &'static str },
    /// A required export is missing.
    MissingExport { name: String, expected: String },
    /// An export of the right name but the wrong kind (`memory` not a memory...).
    ExportKind {
        name: String,
        expected: &'static str,
        found: &'static str,
    },
    /// An exported function of the wrong signature.
    ExportSignature {
        name: String,
        expected: Signature,
        found: Signature,
    },
    /// The exported memory is 64-bit or shared; pointers are 32-bit offsets.
    UnsupportedMemory { detail: &'static str },
    /// A `wasi_snapshot_preview1` function imported with another signature
    /// than preview 1's.
    WasiSignature {
        name: String,
        expected: Signature,
        found: Signature,
    },
    /// A table, memory, global or tag imported from `wasi_snapshot_preview1`.
    WasiNotFunction { name: String, kind: &'static str },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ForeignImport { module, name } => {
                write!(f, "import {module}.{name}: {}", foreign_import_rule(module))
            }
            Self::UnknownImport { name } => write!(
                f,
                "import {IMPORT_MODULE}.{name}: no such host function; \"{IMPORT_MODULE}\" provides nur_send, nur_log and nur_end"
            ),
            Self::ImportSignature {
                name,
                expected,
                found,
            } => write!(
                f,
                "import {IMPORT_MODULE}.{name} has signature {found}, expected {expected}"
            ),
            Self::ImportNotFunction { name, kind } => write!(
                f,
                "import {IMPORT_MODULE}.{name} is a {kind}; only functions may be imported"
            ),
            Self::MissingExport { name, expected } => {
                write!(f, "missing export {name}: expected {expected}")
            }
            Self::ExportKind {
                name,
                expected,
                found,
            } => write!(f, "export {name} is a {found}, expected a {expected}"),
            Self::ExportSignature {
                name,
                expected,
                found,
            } => write!(
                f,
                "export {name} has signature {found}, expected {expected}"
            ),
            Self::UnsupportedMemory { detail } => {
                write!(
                    f,
                    "export memory is {detail}; the ABI needs a 32-bit unshared memory"
                )
            }
            Self::WasiSignature {
                name,
                expected,
                found,
            } => write!(
                f,
                "import {WASI_MODULE}.{name} has signature {found}, expected {expected} (WASI preview 1)"
            ),
            Self::WasiNotFunction { name, kind } => write!(
                f,
                "import {WASI_MODULE}.{name} is a {kind}; only functions may be imported"
            ),
        }
    }
}

/// Why a module is refused.
#[derive(Debug, thiserror::Error)]
pub enum AbiError {
    /// The bytes are neither a binary module nor WAT text.
    #[error("not WebAssembly: {0}")]
    NotWasm(String),
    /// A WebAssembly component, not a core module.
    #[error("not a core WebAssembly module: this is a component; Nur runs core modules")]
    Component,
    /// The binary does not validate.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// The module is valid WebAssembly but breaks the Nur ABI.
    #[error("breaks the Nur ABI: {}", join(.0))]
    Violations(Vec<Violation>),
}

/// The violations, each once, separated by `; `. Foreign imports are
/// grouped by module, in the order of their first appearance: a Go WASI
/// module breaks one rule, not seventeen ("imports from
/// wasi_snapshot_preview1 (17): sched_yield, proc_exit, ...: only functions
/// from "nur" may be imported (WASI is not supported yet)").
fn join(violations: &[Violation]) -> String {
    let mut foreign: Vec<(&str, Vec<&str>)> = Vec::new();
    for violation in violations {
        if let Violation::ForeignImport { module, name } = violation {
            match foreign.iter_mut().find(|(m, _)| m == module) {
                Some((_, names)) => names.push(name),
                None => foreign.push((module, vec![name])),
            }
        }
    }
    let mut parts: Vec<String> = Vec::new();
    for violation in violations {
        let text = match violation {
            Violation::ForeignImport { module, .. } => {
                let Some(at) = foreign.iter().position(|(m, _)| m == module) else {
                    continue; // already written with the first of its module
                };
                let (module, names) = foreign.remove(at);
                if names.len() == 1 {
                    violation.to_string()
                } else {
                    format!(
                        "imports from {module} ({}): {}: {}",
                        names.len(),
                        names.join(", "),
                        foreign_import_rule(module)
                    )
                }
            }
            other => other.to_string(),
        };
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    parts.join("; ")
}

/// Why an import from `module` is refused.
fn foreign_import_rule(module: &str) -> String {
    format!(
        "only functions from \"{IMPORT_MODULE}\" may be imported{}",
        if module.starts_with("wasi") {
            " (WASI is not supported yet)"
        } else {
            ""
        }
    )
}

/// An import of a valid module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub name: String,
    pub signature: Signature,
}

/// The linear memory a module exports, in 64 KiB pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub initial_pages: u64,
    pub maximum_pages: Option<u64>,
}

/// A table a module defines, in entries (8 bytes each in the worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub initial: u64,
    pub maximum: Option<u64>,
}

/// A function imported from `wasi_snapshot_preview1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasiImport {
    pub name: String,
    pub signature: Signature,
    /// Implemented by the worker; otherwise it returns `ENOSYS` (52).
    pub provided: bool,
}

/// What a valid module looks like, for `nur-worker check` and for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The host functions it imports from `"nur"`.
    pub imports: Vec<Import>,
    /// The functions it imports from `wasi_snapshot_preview1` (only where
    /// WASI is allowed; otherwise they are violations).
    pub wasi: Vec<WasiImport>,
    /// Every export, as `(name, kind)`.
    pub exports: Vec<(String, &'static str)>,
    /// The exported memory, the module's only one.
    pub memory: Memory,
    /// Its tables, in index order (none can be imported).
    pub tables: Vec<Table>,
    /// Whether it exports `_initialize`.
    pub initializer: bool,
    /// A Nur-ABI function or a WASI command.
    pub kind: Kind,
    /// Functions defined in the module (not imported).
    pub defined_functions: u32,
}

impl Memory {
    /// Bytes of the initial memory.
    pub fn initial_bytes(&self) -> u64 {
        self.initial_pages * PAGE_SIZE
    }
}

/// The size of a WebAssembly page.
pub const PAGE_SIZE: u64 = 64 * 1024;

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Returns the binary module for `bytes`: binary as is, WAT text compiled.
pub fn to_binary(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, AbiError> {
    if bytes.starts_with(WASM_MAGIC) {
        return Ok(bytes.into());
    }
    let text = std::str::from_utf8(bytes).ok().filter(|text| {
        let trimmed = text.trim_start();
        trimmed.starts_with('(') || trimmed.starts_with(";;")
    });
    match text {
        Some(text) => wat::parse_str(text)
            .map(Into::into)
            .map_err(|e| AbiError::NotWasm(format!("WAT text does not parse: {e}"))),
        None if bytes.is_empty() => Err(AbiError::NotWasm("the module is empty".into())),
        None => Err(AbiError::NotWasm(format!(
            "no \\0asm magic number (starts with {}) and not WAT text",
            hex::encode(&bytes[..bytes.len().min(8)])
        ))),
    }
}

/// Validates a binary module and checks it against the ABI, WASI preview 1
/// imports allowed when [`allow_wasi_preview1`] was called.
pub fn check(binary: &[u8]) -> Result<Summary, AbiError> {
    check_with(
        binary,
        Options {
            wasi_preview1: WASI_PREVIEW1.load(Ordering::Relaxed),
        },
    )
}

/// [`check`] with explicit options.
pub fn check_with(binary: &[u8], options: Options) -> Result<Summary, AbiError> {
    if !binary.starts_with(WASM_MAGIC) {
        return Err(to_binary(binary).err().unwrap_or_else(|| {
            AbiError::NotWasm("WAT text must be compiled first (abi::to_binary)".into())
        }));
    }
    if wasmparser::Parser::is_component(binary) {
        return Err(AbiError::Component);
    }
    let types = Validator::new_with_features(FEATURES)
        .validate_all(binary)
        .map_err(|e| AbiError::Invalid(e.to_string()))?;
    let types = types.as_ref();
    let func = |id: CoreTypeId| Signature::of(types[id].unwrap_func());

    let mut violations = Vec::new();
    let mut imports = Vec::new();
    let mut wasi = Vec::new();
    let mut imported_functions = 0;
    let host = host_functions();
    let wasi_known = wasi_functions();
    for (module, name, ty) in types.core_imports().into_iter().flatten() {
        if matches!(ty, EntityType::Func(_) | EntityType::FuncExact(_)) {
            imported_functions += 1;
        }
        if module == WASI_MODULE && options.wasi_preview1 {
            match ty {
                EntityType::Func(id) | EntityType::FuncExact(id) => {
                    let found = func(id);
                    match wasi_known.iter().find(|(known, _)| *known == name) {
                        Some((_, expected)) if &found != expected => {
                            violations.push(Violation::WasiSignature {
                                name: name.into(),
                                expected: expected.clone(),
                                found,
                            })
                        }
                        // Go imports some twice (runtime and syscall).
                        _ if wasi.iter().any(|w: &WasiImport| w.name == name) => {}
                        _ => wasi.push(WasiImport {
                            name: name.into(),
                            signature: found,
                            provided: wasi_provided(name),
                        }),
                    }
                }
                other => violations.push(Violation::WasiNotFunction {
                    name: name.into(),
                    kind: kind_name(&other),
                }),
            }
            continue;
        }
        if module != IMPORT_MODULE {
            violations.push(Violation::ForeignImport {
                module: module.into(),
                name: name.into(),
            });
            continue;
        }
        let Some((_, expected)) = host.iter().find(|(host_name, _)| *host_name == name) else {
            violations.push(Violation::UnknownImport { name: name.into() });
            continue;
        };
        match ty {
            EntityType::Func(id) | EntityType::FuncExact(id) => {
                let found = func(id);
                if &found == expected {
                    imports.push(Import {
                        name: name.into(),
                        signature: found,
                    });
                } else {
                    violations.push(Violation::ImportSignature {
                        name: name.into(),
                        expected: expected.clone(),
                        found,
                    });
                }
            }
            other => violations.push(Violation::ImportNotFunction {
                name: name.into(),
                kind: kind_name(&other),
            }),
        }
    }

    let exports: Vec<(String, EntityType)> = types
        .core_exports()
        .into_iter()
        .flatten()
        .map(|(name, ty)| (name.to_owned(), ty))
        .collect();
    let export = |name: &str| exports.iter().find(|(n, _)| n == name).map(|(_, ty)| *ty);

    let mut memory = None;
    match export("memory") {
        Some(EntityType::Memory(ty)) if ty.memory64 => {
            violations.push(Violation::UnsupportedMemory { detail: "64-bit" })
        }
        Some(EntityType::Memory(ty)) if ty.shared => {
            violations.push(Violation::UnsupportedMemory { detail: "shared" })
        }
        Some(EntityType::Memory(ty)) => {
            memory = Some(Memory {
                initial_pages: ty.initial,
                maximum_pages: ty.maximum,
            })
        }
        Some(other) => violations.push(Violation::ExportKind {
            name: "memory".into(),
            expected: "memory",
            found: kind_name(&other),
        }),
        None => violations.push(Violation::MissingExport {
            name: "memory".into(),
            expected: "a memory".into(),
        }),
    }
    // A command: `_start` and neither of the ABI's functions, where WASI is.
    let kind = if options.wasi_preview1
        && export(START).is_some()
        && export("alloc").is_none()
        && export("poll_stream").is_none()
    {
        Kind::Command
    } else {
        Kind::Stream
    };
    let required: Vec<(&str, Signature)> = match kind {
        Kind::Stream => required_functions().to_vec(),
        Kind::Command => vec![(START, Signature::new(&[], &[]))],
    };
    let optional = [(INITIALIZE, Signature::new(&[], &[]))];
    for (name, expected) in required.iter().chain(optional.iter()) {
        let found = match export(name) {
            Some(EntityType::Func(id) | EntityType::FuncExact(id)) => func(id),
            Some(other) => {
                violations.push(Violation::ExportKind {
                    name: (*name).into(),
                    expected: "function",
                    found: kind_name(&other),
                });
                continue;
            }
            None if *name == INITIALIZE => continue,
            None => {
                violations.push(Violation::MissingExport {
                    name: (*name).into(),
                    expected: format!("a function {expected}"),
                });
                continue;
            }
        };
        if &found != expected {
            violations.push(Violation::ExportSignature {
                name: (*name).into(),
                expected: expected.clone(),
                found,
            });
        }
    }

    match memory {
        Some(memory) if violations.is_empty() => Ok(Summary {
            imports,
            wasi,
            exports: exports
                .iter()
                .map(|(name, ty)| (name.clone(), kind_name(ty)))
                .collect(),
            memory,
            tables: (0..types.table_count())
                .map(|index| {
                    let table = types.table_at(index);
                    Table {
                        initial: table.initial,
                        maximum: table.maximum,
                    }
                })
                .collect(),
            initializer: export(INITIALIZE).is_some(),
            kind,
            defined_functions: types.function_count() - imported_functions,
        }),
        _ => Err(AbiError::Violations(violations)),
    }
}

fn kind_name(ty: &EntityType) -> &'static str {
    match ty {
        EntityType::Func(_) | EntityType::FuncExact(_) => "function",
        EntityType::Table(_) => "table",
        EntityType::Memory(_) => "memory",
        EntityType::Global(_) => "global",
        EntityType::Tag(_) => "tag",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"(module
        (import "nur" "nur_send" (func (param i32 i32)))
        (import "nur" "nur_end" (func))
        (memory (export "memory") 1 4)
        (func (export "alloc") (param i32) (result i32) i32.const 1024)
        (func (export "poll_stream") (param i32 i32)))"#;

    fn check_wat(text: &str) -> Result<Summary, AbiError> {
        check(&to_binary(text.as_bytes()).unwrap())
    }

    fn violations(text: &str) -> Vec<Violation> {
        match check_wat(text) {
            Err(AbiError::Violations(v)) => v,
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_good_module_is_summarised() {
        let summary = check_wat(GOOD).unwrap();
        let names: Vec<_> = summary.imports.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["nur_send", "nur_end"]);
        assert_eq!(
            summary.memory,
            Memory {
                initial_pages: 1,
                maximum_pages: Some(4)
            }
        );
        assert_eq!(summary.defined_functions, 2);
        assert!(summary.tables.is_empty());
        assert!(!summary.initializer);
        assert_eq!(summary.imports[0].signature.to_string(), "(i32, i32) -> ()");
    }

    #[test]
    fn tables_are_summarised() {
        let summary = check_wat(&GOOD.replace(
            "(memory (export \"memory\") 1 4)",
            "(memory (export \"memory\") 1 4) (table 3 funcref) (table 1 9 externref)",
        ))
        .unwrap();
        assert_eq!(
            summary.tables,
            [
                Table {
                    initial: 3,
                    maximum: None
                },
                Table {
                    initial: 1,
                    maximum: Some(9)
                }
            ]
        );
    }

    #[test]
    fn not_wasm_names_the_first_bytes() {
        let err = to_binary(b"\x7fELF\x02\x01").unwrap_err().to_string();
        assert!(
            err.contains("not WebAssembly") && err.contains("7f454c46"),
            "{err}"
        );
        let err = to_binary(b"").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = to_binary(b"(module (func $f (param i32)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("WAT text does not parse"), "{err}");
    }

    #[test]
    fn invalid_binary_is_refused() {
        let err = check(b"\0asm\x01\0\0\0\x01\x05").unwrap_err();
        assert!(matches!(err, AbiError::Invalid(_)), "{err}");
    }

    #[test]
    fn foreign_imports_are_grouped_by_module_each_problem_once() {
        let foreign = |module: &str, name: &str| Violation::ForeignImport {
            module: module.to_string(),
            name: name.to_string(),
        };
        let missing = Violation::MissingExport {
            name: "alloc".to_string(),
            expected: "a function (i32) -> (i32)".to_string(),
        };
        let errors = AbiError::Violations(vec![
            foreign("wasi_snapshot_preview1", "sched_yield"),
            foreign("env", "abort"),
            foreign("wasi_snapshot_preview1", "proc_exit"),
            missing.clone(),
            foreign("wasi_snapshot_preview1", "fd_write"),
            missing,
        ]);
        assert_eq!(
            errors.to_string(),
            "breaks the Nur ABI: imports from wasi_snapshot_preview1 (3): sched_yield, \
             proc_exit, fd_write: only functions from \"nur\" may be imported (WASI is not \
             supported yet); import env.abort: only functions from \"nur\" may be imported; \
             missing export alloc: expected a function (i32) -> (i32)"
        );
    }

    #[test]
    fn wasi_import_is_named() {
        let v = violations(&GOOD.replace(
            "(import \"nur\" \"nur_end\" (func))",
            "(import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))",
        ));
        assert_eq!(
            v,
            [Violation::ForeignImport {
                module: "wasi_snapshot_preview1".into(),
                name: "fd_write".into()
            }]
        );
        assert!(v[0].to_string().contains("WASI is not supported yet"));
    }

    fn check_wasi(text: &str) -> Result<Summary, AbiError> {
        let options = Options {
            wasi_preview1: true,
        };
        check_with(&to_binary(text.as_bytes()).unwrap(), options)
    }

    #[test]
    fn wasi_imports_pass_where_allowed_and_are_listed() {
        let module = GOOD.replace(
            "(import \"nur\" \"nur_end\" (func))",
            "(import \"nur\" \"nur_end\" (func))
             (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))
             (import \"wasi_snapshot_preview1\" \"proc_exit\" (func (param i32)))
             (import \"wasi_snapshot_preview1\" \"path_open\" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))",
        );
        let summary = check_wasi(&module).unwrap();
        let names: Vec<_> = summary.imports.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["nur_send", "nur_end"]);
        let wasi: Vec<_> = summary
            .wasi
            .iter()
            .map(|i| (i.name.as_str(), i.provided))
            .collect();
        assert_eq!(
            wasi,
            [
                ("fd_write", true),
                ("proc_exit", true),
                ("path_open", false)
            ]
        );
        assert_eq!(summary.defined_functions, 2);
        // Not allowed by default.
        assert!(matches!(
            check_wat(&module),
            Err(AbiError::Violations(v)) if v.len() == 3
        ));
    }

    #[test]
    fn wasi_signatures_are_checked_and_other_modules_still_refused() {
        let module = GOOD.replace(
            "(import \"nur\" \"nur_end\" (func))",
            "(import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32) (result i32)))
             (import \"wasi_snapshot_preview1\" \"mem\" (global i32))
             (import \"env\" \"abort\" (func))",
        );
        let text: Vec<_> = match check_wasi(&module) {
            Err(AbiError::Violations(v)) => v.iter().map(ToString::to_string).collect(),
            other => panic!("expected violations, got {other:?}"),
        };
        assert_eq!(
            text,
            [
                "import wasi_snapshot_preview1.fd_write has signature (i32) -> (i32), expected \
                 (i32, i32, i32, i32) -> (i32) (WASI preview 1)",
                "import wasi_snapshot_preview1.mem is a global; only functions may be imported",
                "import env.abort: only functions from \"nur\" may be imported",
            ]
        );
    }

    #[test]
    fn a_start_without_the_abi_exports_is_a_command_where_wasi_is() {
        let command = r#"(module
            (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#;
        let summary = check_wasi(command).unwrap();
        assert_eq!(summary.kind, Kind::Command);
        assert_eq!(summary.kind.as_str(), "wasi-command");
        assert_eq!(check_wasi(GOOD).unwrap().kind, Kind::Stream);
        // Without WASI it is a module missing the ABI's exports.
        assert!(matches!(
            check_with(&to_binary(command.as_bytes()).unwrap(), Options::default()),
            Err(AbiError::Violations(_))
        ));
        // A `_start` of another signature is named.
        let bad = command.replace(
            "(func (export \"_start\"))",
            "(func (export \"_start\") (param i32))",
        );
        let message = check_wasi(&bad).unwrap_err().to_string();
        assert!(
            message.contains("export _start has signature (i32) -> (), expected () -> ()"),
            "{message}"
        );
    }

    #[test]
    fn wasi_provided_names() {
        assert!(wasi_provided("fd_write") && wasi_provided("poll_oneoff"));
        assert!(wasi_provided("fd_prestat_dir_name") && !wasi_provided("path_open"));
    }

    #[test]
    fn wrong_import_signature_shows_both() {
        let v = violations(&GOOD.replace("(func (param i32 i32)))", "(func (param i64)))"));
        assert_eq!(
            v[0].to_string(),
            "import nur.nur_send has signature (i64) -> (), expected (i32, i32) -> ()"
        );
    }

    #[test]
    fn unknown_host_function() {
        let v = violations(&GOOD.replace("\"nur_end\"", "\"nur_exit\""));
        assert_eq!(
            v,
            [Violation::UnknownImport {
                name: "nur_exit".into()
            }]
        );
    }

    #[test]
    fn missing_and_mistyped_exports_are_all_reported() {
        let v = violations(&GOOD.replace("(export \"alloc\")", "").replace(
            "(export \"poll_stream\") (param i32 i32))",
            "(export \"poll_stream\") (param i32) (result i32) i32.const 0)",
        ));
        let text: Vec<_> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "missing export alloc: expected a function (i32) -> (i32)",
                "export poll_stream has signature (i32) -> (i32), expected (i32, i32) -> ()",
            ]
        );
    }

    #[test]
    fn memory_must_be_a_memory() {
        let v = violations(&GOOD.replace(
            "(memory (export \"memory\") 1 4)",
            "(memory 1) (global (export \"memory\") i32 (i32.const 0))",
        ));
        assert_eq!(
            v[0].to_string(),
            "export memory is a global, expected a memory"
        );
        let v = violations(&GOOD.replace("(memory (export \"memory\") 1 4)", "(memory 1)"));
        assert_eq!(v[0].to_string(), "missing export memory: expected a memory");
    }

    #[test]
    fn threads_and_a_second_memory_are_refused() {
        let refused = |text: &str| match check_wat(text) {
            Err(AbiError::Invalid(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let wait = GOOD.replace(
            "(func (export \"poll_stream\") (param i32 i32))",
            "(func (export \"poll_stream\") (param i32 i32)
               (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))",
        );
        assert!(refused(&wait).contains("threads"), "{}", refused(&wait));
        let shared = GOOD.replace("1 4)", "1 4 shared)");
        assert!(refused(&shared).contains("threads"), "{}", refused(&shared));
        let two = GOOD.replace("1 4)", "1 4) (memory 1)");
        assert!(
            refused(&two).contains("multiple memories"),
            "{}",
            refused(&two)
        );
    }

    #[test]
    fn components_are_refused() {
        let component = wat::parse_str("(component)").unwrap();
        assert!(matches!(check(&component), Err(AbiError::Component)));
    }
}
