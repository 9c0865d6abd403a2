//! A module's initial memory as an image: its active data segments lifted
//! out of the module, so that an instance starts with its memory already
//! written instead of copying every segment in at instantiation.
//!
//! [`lift`] turns a module into the same module without the bytes of its
//! active data segments, and the image those segments write into memory 0
//! (the bytes from address 0 to the last non-zero one). The worker compiles
//! the lifted module and maps the image copy-on-write into every instance's
//! memory ([`crate::pool`]): a connection then costs no `memmove` of the
//! data and no page fault on pages it only reads (the way wasmtime's memfd
//! images work). Go modules carry megabytes of data; echo a few bytes.
//!
//! What the module means does not change: the data section keeps one
//! segment for each lifted one when the module has a data count section
//! (so `memory.init` and `data.drop` indices still hold), as a passive
//! segment of no bytes, which behaves exactly as a dropped active segment
//! does after instantiation; without a data count section nothing can name
//! a segment and the lifted ones are left out. A module is lifted only when
//! every active segment is certain to land where the image says: one memory
//! of its own (not imported, not shared, 32-bit), offsets that are
//! `i32.const`, every segment inside the initial memory (otherwise the
//! instantiation fails, and the module is left as it is so that wasmer says
//! why).
//!
//! Written here rather than taken from a crate: wasm-encoder writes the
//! sections, but no crate lifts data segments into an image (wasmtime does
//! it inside its own runtime, not as a library).

use wasmparser::{DataKind, Operator, Parser, Payload};

/// The least span of non-zero initial memory (from its first non-zero byte
/// to its last) worth an image. Below it, copying the segments in at
/// instantiation costs less than faulting pages in from the image's file:
/// a page the guest reads, then writes, faults twice from a file and once
/// when copied into. Measured with `nur-load` on this repository's
/// examples: shout's 20 KB (5 pages) of data ran 2-8% slower as an image,
/// while Go's 1.3 MB (319 pages) ran 4× faster.
pub const WORTHWHILE_SPAN: usize = 64 << 10;

/// `binary` lifted ([`lift`]) when its image spans at least
/// [`WORTHWHILE_SPAN`]; `None` otherwise, and the module runs as it is.
pub fn lift_if_worthwhile(binary: &[u8]) -> Option<Lifted> {
    lift(binary).filter(|lifted| {
        let first = lifted.image.iter().position(|&b| b != 0);
        first.is_some_and(|first| lifted.image.len() - first >= WORTHWHILE_SPAN)
    })
}

/// A module with its active data segments lifted out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifted {
    /// The module to compile: as given, but for the data section.
    pub module: Vec<u8>,
    /// Memory 0's initial bytes from address 0, up to the last non-zero
    /// byte (empty when the segments write only zeros, or there are none).
    pub image: Vec<u8>,
}

/// A data segment as the lifted module keeps it.
enum Datum<'a> {
    /// Passive: kept with its bytes, for `memory.init`.
    Passive(&'a [u8]),
    /// Active in memory 0 at a constant address: lifted into the image.
    Active { offset: usize, bytes: &'a [u8] },
}

/// `binary` with its active data segments lifted into an image, or `None`
/// when the module does not qualify (see the module documentation) or does
/// not parse (compiling it reports why).
pub fn lift(binary: &[u8]) -> Option<Lifted> {
    let mut initial_bytes = None;
    let mut has_data_count = false;
    let mut data = None;
    for payload in Parser::new(0).parse_all(binary) {
        match payload.ok()? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(import.ok()?.ty, wasmparser::TypeRef::Memory(_)) {
                        return None;
                    }
                }
            }
            Payload::MemorySection(memories) => {
                let mut memories = memories.into_iter();
                let memory = memories.next()?.ok()?;
                if memories.next().is_some() || memory.shared || memory.memory64 {
                    return None;
                }
                initial_bytes = Some(usize::try_from(memory.initial).ok()?.checked_mul(1 << 16)?);
            }
            Payload::DataCountSection { .. } => has_data_count = true,
            Payload::DataSection(section) => {
                data = Some(
                    section
                        .into_iter()
                        .map(|datum| datum.ok().and_then(|datum| lifted(&datum)))
                        .collect::<Option<Vec<_>>>()?,
                );
            }
            _ => {}
        }
    }
    let data = data?;
    let image = image(&data, initial_bytes?)?;

    let mut section = wasm_encoder::DataSection::new();
    for datum in &data {
        match datum {
            Datum::Passive(bytes) => section.passive(bytes.iter().copied()),
            Datum::Active { .. } if has_data_count => section.passive([]),
            Datum::Active { .. } => continue,
        };
    }
    let mut module = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(binary) {
        let payload = payload.ok()?;
        if matches!(payload, Payload::DataSection(_)) {
            module.section(&section);
        } else if let Some((id, range)) = payload.as_section() {
            let range = usize::try_from(range.start).ok()?..usize::try_from(range.end).ok()?;
            module.section(&wasm_encoder::RawSection {
                id,
                data: binary.get(range)?,
            });
        }
    }
    Some(Lifted {
        module: module.finish(),
        image,
    })
}

/// A segment as [`Datum`], or `None` when it cannot be lifted.
fn lifted<'a>(datum: &wasmparser::Data<'a>) -> Option<Datum<'a>> {
    match &datum.kind {
        DataKind::Passive => Some(Datum::Passive(datum.data)),
        DataKind::Active {
            memory_index: 0,
            offset_expr,
        } => {
            let mut ops = offset_expr.get_operators_reader();
            let (Ok(Operator::I32Const { value }), Ok(Operator::End)) = (ops.read(), ops.read())
            else {
                return None;
            };
            Some(Datum::Active {
                // An address is unsigned.
                offset: value as u32 as usize,
                bytes: datum.data,
            })
        }
        DataKind::Active { .. } => None,
    }
}

/// What the active segments write, in order, into a memory of
/// `initial_bytes`, up to the last non-zero byte; `None` if one does not fit.
fn image(data: &[Datum<'_>], initial_bytes: usize) -> Option<Vec<u8>> {
    let mut image = Vec::new();
    for datum in data {
        let Datum::Active { offset, bytes } = datum else {
            continue;
        };
        let end = offset.checked_add(bytes.len())?;
        if end > initial_bytes {
            return None;
        }
        if image.len() < end {
            image.resize(end, 0);
        }
        image[*offset..end].copy_from_slice(bytes);
    }
    let used = image
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    image.truncate(used);
    image.shrink_to_fit();
    Some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    fn data_segments(binary: &[u8]) -> Vec<(bool, usize)> {
        Parser::new(0)
            .parse_all(binary)
            .filter_map(|p| match p.unwrap() {
                Payload::DataSection(s) => Some(s),
                _ => None,
            })
            .flat_map(|s| s.into_iter().map(|d| d.unwrap()))
            .map(|d| (matches!(d.kind, DataKind::Active { .. }), d.data.len()))
            .collect()
    }

    #[test]
    fn active_segments_become_the_image_in_order_and_passive_ones_stay() {
        let module = wat(r#"(module
            (memory 1)
            (data (i32.const 4) "abcdef")
            (data "passive bytes")
            (data (i32.const 6) "XY")
            (data (i32.const 20) "\00\00")
            (func (export "f") (result i32) i32.const 1)
            (@custom "note" "kept"))"#);
        let lifted = lift(&module).expect("lifted");
        assert_eq!(
            lifted.image, b"\0\0\0\0abXYef",
            "later segments win; zeros trimmed"
        );
        wasmparser::validate(&lifted.module).expect("a valid module");
        assert_eq!(data_segments(&lifted.module), [(false, 13)]);
        assert!(
            lifted.module.windows(4).any(|w| w == b"kept"),
            "custom sections are copied"
        );
    }

    #[test]
    fn with_a_data_count_each_lifted_segment_keeps_its_index_as_an_empty_passive_one() {
        let module = wat(r#"(module
            (memory 1)
            (data (i32.const 0) "\01")
            (data "second")
            (func (export "f") (memory.init 1 (i32.const 0) (i32.const 0) (i32.const 6)) (data.drop 0)))"#);
        let lifted = lift(&module).expect("lifted");
        assert_eq!(lifted.image, [1]);
        wasmparser::validate(&lifted.module).expect("a valid module");
        assert_eq!(data_segments(&lifted.module), [(false, 0), (false, 6)]);
    }

    #[test]
    fn modules_whose_data_cannot_be_placed_ahead_are_left_alone() {
        for text in [
            // an imported memory
            r#"(module (import "env" "m" (memory 1)) (data (i32.const 0) "a"))"#,
            // an offset from a global
            r#"(module (global $g (import "env" "g") i32) (memory 1) (data (global.get $g) "a"))"#,
            // past the initial memory: instantiation must fail as before
            r#"(module (memory 1) (data (i32.const 65535) "ab"))"#,
            // a negative offset is an address near 4 GiB
            r#"(module (memory 1) (data (i32.const -1) "a"))"#,
            // no data at all
            r#"(module (memory 1))"#,
            // not a module
            "(module (memory 1) (data (i32.const 0) \"a\"))\0",
        ] {
            let binary = wat::parse_str(text).unwrap_or_else(|_| text.as_bytes().to_vec());
            assert_eq!(lift(&binary), None, "{text}");
        }
    }

    #[test]
    fn only_an_image_that_spans_enough_is_worth_lifting() {
        let small = wat(r#"(module (memory 2) (data (i32.const 70000) "ab"))"#);
        assert!(lift(&small).is_some());
        assert_eq!(lift_if_worthwhile(&small), None, "two bytes are copied in");
        let wide = wat(r#"(module (memory 3)
            (data (i32.const 70000) "a") (data (i32.const 135535) "b"))"#);
        let lifted = lift_if_worthwhile(&wide).expect("65,536 bytes apart");
        assert_eq!(lifted.image.len(), 135536);
    }

    #[test]
    fn zeros_make_an_empty_image() {
        let lifted = lift(&wat(
            r#"(module (memory 1) (data (i32.const 100) "\00\00"))"#,
        ))
        .unwrap();
        assert!(lifted.image.is_empty());
        assert_eq!(data_segments(&lifted.module), []);
    }
}
