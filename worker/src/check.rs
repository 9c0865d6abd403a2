//! `nur-worker check URL`: the ABI check, printed as a one-screen summary.

use std::fmt::Write;

use nur_module::Module;
use nur_module::abi::PAGE_SIZE;

/// The summary printed for a valid module.
pub fn summary(module: &Module) -> String {
    let s = &module.summary;
    let mut out = String::new();
    let pages = |pages: u64| {
        format!(
            "{pages} pages ({})",
            bytesize::ByteSize(pages * PAGE_SIZE).display().iec()
        )
    };
    let _ = writeln!(out, "module    {}", module.source);
    let kind = match s.kind {
        nur_module::abi::Kind::Stream => "nur-abi (alloc and poll_stream for every chunk)",
        nur_module::abi::Kind::Command => {
            "wasi-command (_start once per connection: stdin the client's bytes, stdout the answer)"
        }
    };
    let _ = writeln!(out, "kind      {kind}");
    let _ = writeln!(out, "sha256    {}", module.sha256);
    let _ = writeln!(out, "size      {} bytes", module.size);
    let _ = writeln!(
        out,
        "memory    {} initial, {}",
        pages(s.memory.initial_pages),
        s.memory
            .maximum_pages
            .map_or("no maximum".to_string(), |max| format!(
                "{} maximum",
                pages(max)
            ))
    );
    let tables: Vec<_> = s
        .tables
        .iter()
        .map(|table| {
            let maximum = table
                .maximum
                .map_or("no maximum".to_string(), |max| format!("{max} maximum"));
            format!("{} entries initial, {maximum}", table.initial)
        })
        .collect();
    let tables = if tables.is_empty() {
        "none".to_string()
    } else {
        tables.join("; ")
    };
    let _ = writeln!(out, "tables    {tables}");
    let _ = writeln!(out, "functions {} defined", s.defined_functions);
    let mut label = "imports  ";
    if s.imports.is_empty() {
        let _ = writeln!(out, "{label} none");
    }
    for import in &s.imports {
        let _ = writeln!(out, "{label} nur.{} {}", import.name, import.signature);
        label = "         ";
    }
    if !s.wasi.is_empty() {
        let names = |provided: bool| {
            let names: Vec<_> = s
                .wasi
                .iter()
                .filter(|i| i.provided == provided)
                .map(|i| i.name.as_str())
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "wasi      {} (WASI preview 1) provided: {}",
            nur_module::abi::WASI_MODULE,
            names(true)
        );
        let _ = writeln!(out, "          returning ENOSYS (52): {}", names(false));
    }
    let exports: Vec<_> = s
        .exports
        .iter()
        .map(|(name, kind)| format!("{name} ({kind})"))
        .collect();
    let _ = writeln!(out, "exports   {}", exports.join(", "));
    let _ = writeln!(
        out,
        "{}",
        match s.kind {
            nur_module::abi::Kind::Stream => "ok: follows the Nur function ABI v1",
            nur_module::abi::Kind::Command => "ok: a WASI command, served over its connection",
        }
    );
    out
}
