//! `nur-module`: what a Nur module is, shared by the worker and the operator.
//!
//! Layout:
//! - [`source`]: where a module comes from, and fetching its bytes
//!   (`object_store`: files, S3, GCS, Azure, HTTP).
//! - [`policy`]: what a fetch may reach (files, local addresses, the
//!   credential settings a tenant's Secret may hold, the size limit);
//!   [`transport`]: the HTTP client that enforces it at connect time.
//! - [`abi`]: the ABI check (wasmparser) and the module summary.
//! - this file: [`load`], which fetches, digests, decompresses zstd,
//!   compiles WAT text and checks, and [`sha256_hex`].
//!
//! No wasmer and no Kubernetes here: the operator checks modules with the
//! same code the worker runs before it serves.
#![forbid(unsafe_code)]

pub mod abi;
pub mod policy;
pub mod source;
pub mod transport;

use sha2::{Digest, Sha256};

pub use abi::{AbiError, Summary};
pub use policy::Policy;
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
    load_with(url, Settings::Environment, &Policy::TRUSTED).await
}

/// Fetches the module at `url` with the store settings of `settings` under
/// `policy`, and checks it against the ABI.
pub async fn load_with(
    url: &str,
    settings: Settings<'_>,
    policy: &Policy,
) -> Result<Module, LoadError> {
    let source = Source::parse_with(url, settings, policy)?;
    let stored = source.fetch().await?;
    Module::from_stored(source, stored)
}

impl Module {
    /// Digests, decompresses and checks the bytes of an object as stored.
    /// An uncompressed module is kept as it is, without a copy.
    pub fn from_stored(source: Source, stored: Vec<u8>) -> Result<Self, LoadError> {
        let sha256 = sha256_hex(&stored);
        let size = stored.len() as u64;
        let compressed = stored.starts_with(&ZSTD_MAGIC);
        let bytes = if compressed {
            decompress(&source, &stored)?
        } else {
            stored
        };
        let abi = |error| LoadError::Abi {
            url: source.to_string(),
            error,
        };
        let binary = match abi::to_binary(&bytes).map_err(abi)? {
            std::borrow::Cow::Borrowed(_) => bytes,
            std::borrow::Cow::Owned(compiled) => compiled,
        };
        let summary = abi::check(&binary).map_err(abi)?;
        Ok(Module {
            sha256,
            size,
            compressed,
            binary,
            summary,
            source,
        })
    }
}

/// Decompresses a zstd stream into one buffer of exactly its size, refusing
/// more than the source's size limit. A first pass only counts, so that a
/// small bomb costs time, never memory.
fn decompress(source: &Source, stored: &[u8]) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let limit = source.policy().max_bytes;
    let zstd = |e: std::io::Error| LoadError::Zstd {
        url: source.to_string(),
        cause: e.to_string(),
    };
    let too_large = || LoadError::Source(source.too_large("decompressed, the module"));
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(stored)
        && declared > limit
    {
        return Err(too_large());
    }
    let decoder = || zstd::stream::read::Decoder::new(stored).map_err(zstd);
    let size =
        std::io::copy(&mut decoder()?.take(limit + 1), &mut std::io::sink()).map_err(zstd)?;
    if size > limit {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(size as usize);
    decoder()?.take(size).read_to_end(&mut out).map_err(zstd)?;
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
        let module = Module::from_stored(source(), stored.clone()).unwrap();
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
        let err = Module::from_stored(source(), stored)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mem.wasm: corrupt zstd data"), "{err}");
    }

    #[test]
    fn a_zstd_bomb_is_refused_without_its_bytes_in_memory() {
        // 1 GiB of zeros, compressed without the size in the frame header.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        encoder.include_contentsize(false).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        }
        let stored = encoder.finish().unwrap();
        assert!(stored.len() < 64 * 1024, "{}", stored.len());
        let err = Module::from_stored(source(), stored)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "mem.wasm: decompressed, the module is more than the {}-byte module size limit",
                policy::MAX_MODULE_BYTES
            )
        );
    }
}
