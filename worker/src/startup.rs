//! From `--module` to a [`Function`] ready to serve: fetch (retrying while
//! storage is unreachable), verify the pinned digest, then load native code
//! from an AOT artifact or the cache, or compile.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use nur_module::{Module, Policy, Settings, Source};

use crate::artifact::{self, Cache};
use crate::config::ServeArgs;
use crate::guest::Function;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Fetches and checks the module, retrying with backoff while the storage is
/// unreachable; any other error (not found, access denied, not wasm, an ABI
/// rule) is final. Only a whole module that passed the check is returned.
/// With `static_credentials`, only the static credential variables of the
/// environment configure the store ([`nur_module::policy::allowed_variables`]).
pub async fn load_module(url: &str, static_credentials: bool) -> anyhow::Result<Module> {
    let variables = store_variables(static_credentials);
    let settings = settings(variables.as_ref());
    let mut delay = FIRST_RETRY;
    loop {
        match nur_module::load_with(url, settings, &Policy::TRUSTED).await {
            Ok(module) => return Ok(module),
            Err(e) if e.is_transient() => {
                tracing::warn!(retry_in_ms = delay.as_millis() as u64, "{e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LAST_RETRY);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The static credential variables of the environment, with
/// `--static-credentials`.
fn store_variables(static_credentials: bool) -> Option<BTreeMap<String, String>> {
    static_credentials.then(|| nur_module::policy::allowed_variables(std::env::vars()))
}

/// Only `variables` when given, else the whole environment.
fn settings(variables: Option<&BTreeMap<String, String>>) -> Settings<'_> {
    variables.map_or(Settings::Environment, Settings::Variables)
}

/// Refuses a module whose digest differs from the pin, naming both.
pub fn verify_digest(what: &str, actual: &str, pinned: Option<&str>) -> anyhow::Result<()> {
    if let Some(pin) = pinned {
        anyhow::ensure!(
            pin.eq_ignore_ascii_case(actual),
            "{what}: sha256 is {actual}, but the pin is {pin}"
        );
    }
    Ok(())
}

/// How the native code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cache,
    Artifact,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compiled => "compiled",
            Self::Cache => "cache",
            Self::Artifact => "artifact",
        }
    }
}

/// Builds the function: from `--artifact` when given, else from the cache
/// when there is a sound entry, else by compiling (and filling the cache).
pub async fn function(
    args: &ServeArgs,
    module: &Module,
    name: &str,
) -> anyhow::Result<(Function, Origin, Duration)> {
    Function::check_limits(module, &args.limits)?;
    let engine = Function::engine(&args.limits);
    let started = std::time::Instant::now();
    let artifact_bytes = match &args.artifact {
        Some(url) => {
            let variables = store_variables(args.static_credentials);
            let settings = settings(variables.as_ref());
            let bytes = Source::parse_with(url, settings, &Policy::TRUSTED)?
                .fetch()
                .await?;
            let actual = nur_module::sha256_hex(&bytes);
            verify_digest(url, &actual, args.artifact_sha256.as_deref())?;
            Some(bytes)
        }
        None => None,
    };
    let cache = args.cache_dir.as_deref().map(Cache::new).transpose()?;
    let (module_sha, binary_owner) = (module.sha256.clone(), module.clone());
    let engine_for_work = engine.clone();
    let (compiled, origin) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let engine = engine_for_work;
        if let Some(bytes) = artifact_bytes {
            let compiled =
                artifact::decode(&engine, &module_sha, &bytes).context("--artifact refused")?;
            return Ok((compiled, Origin::Artifact));
        }
        if let Some(compiled) = cache.as_ref().and_then(|c| c.load(&engine, &module_sha)) {
            return Ok((compiled, Origin::Cache));
        }
        let (compiled, _) = Function::compile(&engine, &binary_owner)?;
        if let Some(cache) = &cache
            && let Err(e) = cache.store(&engine, &module_sha, &compiled)
        {
            tracing::warn!("could not write the artifact cache: {e:#}");
        }
        Ok((compiled, Origin::Compiled))
    })
    .await??;
    let function = Function::new(engine, compiled, module, name, &args.limits);
    Ok((function, origin, started.elapsed()))
}
