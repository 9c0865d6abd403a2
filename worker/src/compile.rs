//! `nur-worker compile`: a module compiled ahead of time into an
//! [`artifact`](crate::artifact), written to a file or stored at a URL
//! beside the module, with the artifact's sha256 reported. The operator
//! runs it as a Job once per module digest and reads that line from the
//! Job pod's termination message (`--termination-log`); the worker pods
//! then load the artifact pinned by it instead of compiling.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nur_module::{Policy, Source};

use crate::guest::Function;
use crate::startup;

/// What `nur-worker compile` was asked to do.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The module: a path or URL (file, s3, gs, az, http(s)) to .wasm, .wasm.zst or .wat.
    pub url: String,
    /// Where to write the artifact.
    #[arg(
        short,
        long,
        required_unless_present = "upload",
        conflicts_with = "upload"
    )]
    pub output: Option<PathBuf>,
    /// Store the artifact at this object storage URL (s3, gs, az) instead.
    #[arg(long)]
    pub upload: Option<String>,
    /// The module's sha256 (hex): compile only these bytes.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Store settings only from the static credential variables of the
    /// environment (as `serve --static-credentials`).
    #[arg(long)]
    pub static_credentials: bool,
    /// Also write the outcome to this file: `artifact-sha256 HEX` on
    /// success, the error otherwise (a pod's termination message).
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// Runs `compile`; returns the line to print.
pub async fn run(args: &CompileArgs) -> anyhow::Result<String> {
    let outcome = compile(args).await;
    if let Some(path) = &args.termination_log {
        let text = match &outcome {
            Ok(done) => format!("artifact-sha256 {}\n", done.sha256),
            Err(e) => format!("{e:#}\n"),
        };
        write_termination_log(path, &text)?;
    }
    let done = outcome?;
    Ok(format!(
        "{}: {} bytes, sha256 {} (module sha256 {}, compiled in {} ms)",
        done.to, done.size, done.sha256, done.module_sha256, done.compile_millis
    ))
}

struct Compiled {
    to: String,
    size: usize,
    sha256: String,
    module_sha256: String,
    compile_millis: u128,
}

async fn compile(args: &CompileArgs) -> anyhow::Result<Compiled> {
    let module = startup::load_module(&args.url, args.static_credentials).await?;
    startup::verify_digest(&args.url, &module.sha256, args.sha256.as_deref())?;
    let engine = Function::engine(&crate::config::Limits::default(), &module)?;
    let (bytes, took) = tokio::task::spawn_blocking({
        let module = module.clone();
        move || -> anyhow::Result<_> {
            let (compiled, took) = Function::compile(&engine, &module)?;
            Ok((
                crate::artifact::encode(&engine, &module.sha256, &compiled)?,
                took,
            ))
        }
    })
    .await??;
    let to = match (&args.output, &args.upload) {
        (Some(path), _) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            path.display().to_string()
        }
        (None, Some(url)) => {
            store(url, &bytes, args.static_credentials).await?;
            url.clone()
        }
        (None, None) => anyhow::bail!("give --output or --upload"),
    };
    Ok(Compiled {
        to,
        size: bytes.len(),
        sha256: nur_module::sha256_hex(&bytes),
        module_sha256: module.sha256,
        compile_millis: took.as_millis(),
    })
}

async fn store(url: &str, bytes: &[u8], static_credentials: bool) -> anyhow::Result<()> {
    let variables = startup::store_variables(static_credentials);
    let settings = startup::settings(variables.as_ref());
    Source::parse_with(url, settings, &Policy::TRUSTED)?
        .put(bytes.to_vec())
        .await
        .with_context(|| format!("storing the artifact at {url}"))
}

/// A termination message is read by the kubelet up to 4 KiB.
fn write_termination_log(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut end = text.len().min(4000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::fs::write(path, &text[..end]).with_context(|| format!("writing {}", path.display()))
}
