//! `nur build`: each function's build command in its directory, the
//! module it writes checked against the Nur ABI (the check the worker and
//! the operator run), compressed with zstd into
//! `.nur/build/<name>.wasm.zst` at the nurfile's directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nurfile::Function;
use crate::template::Template;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{name}: cannot run `{command}` in {dir}: {source}")]
    Spawn {
        name: String,
        command: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: `{command}` in {dir} failed ({status}):\n{output}")]
    Failed {
        name: String,
        command: String,
        dir: PathBuf,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "{name}: `{command}` succeeded but {output} is not there ({source}): set build.output to the module it writes"
    )]
    NoOutput {
        name: String,
        command: String,
        output: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}: {output} is not WebAssembly text: {message}")]
    Wat {
        name: String,
        output: PathBuf,
        message: String,
    },
    #[error("{name}: {output} breaks the Nur ABI: {source}")]
    Abi {
        name: String,
        output: PathBuf,
        source: nur_module::AbiError,
    },
    #[error("{name}: cannot write {path}: {source}")]
    Write {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A built function.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub label: String,
    /// `.nur/build/<label>.wasm.zst`.
    pub path: PathBuf,
    /// The compressed module: what is uploaded and pinned.
    pub bytes: Vec<u8>,
    pub sha256: String,
    /// The module's size before compression.
    pub wasm_size: usize,
}

/// The directory builds go to, below the nurfile's directory.
pub fn build_dir(root: &Path) -> PathBuf {
    root.join(".nur").join("build")
}

/// Builds the functions, as many at once as the machine has cores (a
/// toolchain uses more than one, and more builds at once only compete);
/// the results in the functions' order.
pub fn build_all(root: &Path, functions: &[Function]) -> Vec<Result<Built, BuildError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(functions.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(functions.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = functions.get(i) else { break };
                    let built = build(root, f);
                    results.lock().unwrap().push((i, built));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Builds one function.
pub fn build(root: &Path, f: &Function) -> Result<Built, BuildError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(&f.command)
        .current_dir(&f.directory)
        .output()
        .map_err(|source| BuildError::Spawn {
            name: f.name.clone(),
            command: f.command.clone(),
            dir: f.directory.clone(),
            source,
        })?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(BuildError::Failed {
            name: f.name.clone(),
            command: f.command.clone(),
            dir: f.directory.clone(),
            status: out.status,
            output,
        });
    }
    let raw = std::fs::read(&f.output).map_err(|source| BuildError::NoOutput {
        name: f.name.clone(),
        command: f.command.clone(),
        output: f.output.clone(),
        source,
    })?;
    let wasm = if f.template == Template::Wat || f.output.extension().is_some_and(|e| e == "wat") {
        wat::parse_bytes(&raw)
            .map_err(|e| BuildError::Wat {
                name: f.name.clone(),
                output: f.output.clone(),
                message: e.to_string(),
            })?
            .into_owned()
    } else {
        raw
    };
    nur_module::abi::check(&wasm).map_err(|source| BuildError::Abi {
        name: f.name.clone(),
        output: f.output.clone(),
        source,
    })?;
    let bytes = zstd::encode_all(wasm.as_slice(), 19).expect("zstd into memory");
    let dir = build_dir(root);
    let path = dir.join(format!("{}.wasm.zst", f.label));
    let write = |source| BuildError::Write {
        name: f.name.clone(),
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(write)?;
    std::fs::write(&path, &bytes).map_err(write)?;
    Ok(Built {
        name: f.name.clone(),
        label: f.label.clone(),
        sha256: nur_module::sha256_hex(&bytes),
        wasm_size: wasm.len(),
        path,
        bytes,
    })
}
