//! `nur-module`: what a Nur module is, shared by the worker and the operator.
//!
//! Layout:
//! - [`source`]: where a module comes from, and fetching its bytes
//!   (`object_store`: files, S3, GCS, Azure, HTTP).
//! - [`abi`]: the ABI check (wasmparser) and the module summary.
//! - this file: [`load`], which fetches, digests, decompresses zstd,
//!   compiles WAT text and checks, and [`sha256_hex`].
//!
//! No wasmer and no Kubernetes here: the operator checks modules with the
//! same code the worker runs before it serves.
#![forbid(unsafe_code)]

pub mod abi;
pub mod source;

use sha2::{Digest, Sha256};

pub use abi::{AbiError, Summary};
pub use source::{Settings, Source, SourceError};

/// A fetched module that passed the ABI check.
#[derive(Debug, Clone)]
pub struct Module {
    /// Where it came from.
    pub source: Source,
    /// The binary module (WAT text already compiled).
    pub binary: Vec<u8>,
    /// Hex sha256 of the object as stored (before zstd decompression).
    pub sha256: String,
    /// Size of the object as stored.
    pub size: u64,
    /// Whether the object was zstd-compressed.
    pub compressed: bool,
    /// Imports, exports and memory.
    pub summary: Summary,
}

/// Why a module cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{url}: corrupt zstd data: {cause}")]
    Zstd { url: String, cause: String },
    #[error("{url}: {error}")]
    Abi {
        url: String,
        #[source]
        error: AbiError,
    },
}

impl LoadError {
    /// Whether trying again later may succeed (storage down, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Source(e) if e.is_transient())
    }
}

/// The zstd frame magic number; the original platform stored `.wasm.zst`.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Fetches the module at `url` and checks it against the ABI.
pub async fn load(url: &str) -> Result<Module, LoadError> {
    load_with(url, Settings::Environment).await
}

/// Fetches the module at `url` with the store settings of `settings`, and
/// checks it against the ABI.
pub async fn load_with(url: &str, settings: Settings<'_>) -> Result<Module, LoadError> {
    let source = Source::parse_with(url, settings)?;
    let stored = source.fetch().await?;
    Module::from_stored(source, &stored)
}

impl Module {
    /// Digests, decompresses and checks the bytes of an object as stored.
    pub fn from_stored(source: Source, stored: &[u8]) -> Result<Self, LoadError> {
        let compressed = stored.starts_with(&ZSTD_MAGIC);
        let decompressed;
        let bytes = if compressed {
            decompressed = decompress(stored).map_err(|cause| LoadError::Zstd {
                url: source.to_string(),
                cause,
            })?;
            &decompressed[..]
        } else {
            stored
        };
        let abi = |error| LoadError::Abi {
            url: source.to_string(),
            error,
        };
        let binary = abi::to_binary(bytes).map_err(abi)?.into_owned();
        let summary = abi::check(&binary).map_err(abi)?;
        Ok(Module {
            sha256: sha256_hex(stored),
            size: stored.len() as u64,
            compressed,
            binary,
            summary,
            source,
        })
    }
}

/// Decompresses a zstd stream, refusing more than [`source::MAX_MODULE_BYTES`].
fn decompress(stored: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(stored).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    decoder
        .take(source::MAX_MODULE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > source::MAX_MODULE_BYTES {
        return Err(format!(
            "decompresses to more than the {}-byte module size limit",
            source::MAX_MODULE_BYTES
        ));
    }
    Ok(out)
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"(module
        (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 0)
        (func (export "poll_stream") (param i32 i32)))"#;

    fn source() -> Source {
        Source::parse("mem.wasm").unwrap()
    }

    #[test]
    fn zstd_is_detected_and_the_digest_is_of_the_stored_bytes() {
        let binary = wat::parse_str(MODULE).unwrap();
        let stored = zstd::encode_all(&binary[..], 3).unwrap();
        let module = Module::from_stored(source(), &stored).unwrap();
        assert!(module.compressed);
        assert_eq!(module.binary, binary);
        assert_eq!(module.sha256, sha256_hex(&stored));
        assert_eq!(module.size, stored.len() as u64);
    }

    #[test]
    fn corrupt_zstd_is_named() {
        let binary = wat::parse_str(MODULE).unwrap();
        let mut stored = zstd::encode_all(&binary[..], 3).unwrap();
        let cut = stored.len() / 2;
        stored.truncate(cut);
        let err = Module::from_stored(source(), &stored)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mem.wasm: corrupt zstd data"), "{err}");
    }
}
