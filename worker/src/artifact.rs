//! Native artifacts: a module compiled by wasmer and serialized, so that a
//! worker can start without compiling.
//!
//! An artifact file is a short header followed by wasmer's serialized module:
//!
//! ```text
//! nur-artifact v3\n
//! <sha256 of the module as stored>\n
//! <engine key: wasmer version, compiler, target, CPU features>\n
//! <wasmer bytes>
//! ```
//!
//! Loading one runs native code, so it is only done for bytes whose sha256
//! is known to be good: pinned by whoever built the artifact
//! (`serve --artifact-sha256`), or recorded beside it in this worker's own
//! cache directory. Anything else (a corrupt, truncated or foreign file, an
//! artifact for another module or another CPU) is refused with a reason,
//! and the cache then recompiles.

use std::io::Write;
use std::path::{Path, PathBuf};

use wasmer::Engine;
use wasmer::sys::NativeEngineExt;

/// v3: compiled from the module with its data lifted into a memory image
/// when it is worth one ([`crate::image::lift_if_worthwhile`]), its memory
/// accesses bounds-checked ([`crate::pool::STYLE`]). A v2 artifact relied
/// on guard pages (it would run on wasmer's own memories, not the pool's)
/// and a v1 artifact copied the data itself; both are compiled again. The
/// version stands for those rules too: a change to one is a new version, as
/// an artifact lifted under another rule would start from the wrong memory.
const MAGIC: &str = "nur-artifact v3";

/// The wasmer release the artifacts are made with (pinned in Cargo.toml).
const WASMER: &str = "wasmer 7.4.2";

/// What decides whether an artifact fits this engine.
pub fn engine_key(engine: &Engine) -> String {
    let target = engine.target();
    let mut features: Vec<String> = target
        .cpu_features()
        .iter()
        .map(|f| format!("{f:?}").to_lowercase())
        .collect();
    features.sort();
    format!(
        "{WASMER} {} {} {}",
        engine.deterministic_id(),
        target.triple(),
        features.join(",")
    )
}

/// Serializes `module` (compiled from the module whose stored sha256 is
/// `module_sha256`) into artifact bytes.
pub fn encode(
    engine: &Engine,
    module_sha256: &str,
    module: &wasmer::Module,
) -> anyhow::Result<Vec<u8>> {
    let body = module.serialize()?;
    let mut out = format!("{MAGIC}\n{module_sha256}\n{}\n", engine_key(engine)).into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Loads artifact bytes for the module `module_sha256`. The caller vouches
/// that `bytes` are trusted (their sha256 was pinned or recorded).
pub fn decode(
    engine: &Engine,
    module_sha256: &str,
    bytes: &[u8],
) -> anyhow::Result<wasmer::Module> {
    let mut lines = bytes.splitn(4, |&b| b == b'\n');
    let mut line = || std::str::from_utf8(lines.next().unwrap_or_default()).unwrap_or("");
    let (magic, built_for, key) = (line(), line(), line());
    anyhow::ensure!(
        magic == MAGIC,
        "{}",
        match magic.strip_prefix("nur-artifact ") {
            Some(version) => format!("an artifact of format {version}, this worker reads {MAGIC}"),
            None => "not a Nur artifact".to_string(),
        }
    );
    anyhow::ensure!(
        built_for == module_sha256,
        "the artifact was built for module sha256 {built_for}, not {module_sha256}"
    );
    let expected = engine_key(engine);
    anyhow::ensure!(
        key == expected,
        "the artifact was built for [{key}], this worker is [{expected}]"
    );
    let header = magic.len() + built_for.len() + key.len() + 3;
    // SAFETY: wasmer artifacts contain native code that is run as is. The
    // bytes are trusted: the caller checked their sha256 against a pin given
    // by the operator or against the digest this worker recorded when it
    // wrote them; the header above checked module, wasmer version, compiler
    // and CPU features.
    #[allow(unsafe_code)]
    let module = unsafe { wasmer::Module::deserialize(engine, &bytes[header..]) }?;
    Ok(module)
}

/// The compiled-module cache in `--cache-dir`: `<key>.artifact` and, beside
/// it, `<key>.sha256` with the artifact's own digest.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating the cache directory {}: {e}", dir.display()))?;
        Ok(Self { dir: dir.into() })
    }

    fn paths(&self, engine: &Engine, module_sha256: &str) -> (PathBuf, PathBuf) {
        let key =
            nur_module::sha256_hex(format!("{module_sha256} {}", engine_key(engine)).as_bytes());
        (
            self.dir.join(format!("{key}.artifact")),
            self.dir.join(format!("{key}.sha256")),
        )
    }

    /// The cached module, if there is a sound one. A damaged entry is logged,
    /// removed and reported as a miss.
    pub fn load(&self, engine: &Engine, module_sha256: &str) -> Option<wasmer::Module> {
        let (artifact, digest) = self.paths(engine, module_sha256);
        let bytes = std::fs::read(&artifact).ok()?;
        let recorded = std::fs::read_to_string(&digest).unwrap_or_default();
        let result = if recorded.trim() != nur_module::sha256_hex(&bytes) {
            Err(anyhow::anyhow!(
                "its sha256 does not match the one recorded beside it"
            ))
        } else {
            decode(engine, module_sha256, &bytes)
        };
        match result {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %artifact.display(), "cached artifact refused, recompiling: {e:#}");
                let _ = std::fs::remove_file(&artifact);
                let _ = std::fs::remove_file(&digest);
                None
            }
        }
    }

    /// Stores `module` atomically (write to a temporary file, then rename).
    pub fn store(
        &self,
        engine: &Engine,
        module_sha256: &str,
        module: &wasmer::Module,
    ) -> anyhow::Result<()> {
        let (artifact, digest) = self.paths(engine, module_sha256);
        let bytes = encode(engine, module_sha256, module)?;
        write_atomically(&digest, nur_module::sha256_hex(&bytes).as_bytes())?;
        write_atomically(&artifact, &bytes)?;
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    Ok(())
}
