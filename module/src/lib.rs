//! `nur-module`: what a Nur module is, shared by the worker and the operator.
//!
//! Layout:
//! - [`source`]: where a module comes from, and fetching its bytes.
//! - [`abi`]: the ABI check (wasmparser) and the module summary.
//! - this file: [`load`], which fetches, digests, compiles WAT text and
//!   checks, and [`sha256_hex`].
//!
//! No wasmer and no Kubernetes here: the operator checks modules with the
//! same code the worker runs before it serves.
#![forbid(unsafe_code)]

pub mod abi;
pub mod source;

use sha2::{Digest, Sha256};

pub use abi::{AbiError, Summary};
pub use source::{Source, SourceError};

/// A fetched module that passed the ABI check.
#[derive(Debug, Clone)]
pub struct Module {
    /// Where it came from.
    pub source: Source,
    /// The binary module (WAT text already compiled).
    pub binary: Vec<u8>,
    /// Hex sha256 of the bytes as fetched.
    pub sha256: String,
    /// Size of the bytes as fetched.
    pub size: u64,
    /// Imports, exports and memory.
    pub summary: Summary,
}

/// Why a module cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{source_url}: {error}")]
    Abi {
        source_url: String,
        #[source]
        error: AbiError,
    },
}

/// Fetches the module at `url` and checks it against the ABI.
pub async fn load(url: &str) -> Result<Module, LoadError> {
    let source = Source::parse(url)?;
    let bytes = source.fetch().await?;
    let abi = |error| LoadError::Abi {
        source_url: source.to_string(),
        error,
    };
    let binary = abi::to_binary(&bytes).map_err(abi)?.into_owned();
    let summary = abi::check(&binary).map_err(abi)?;
    Ok(Module {
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
        binary,
        summary,
        source,
    })
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
