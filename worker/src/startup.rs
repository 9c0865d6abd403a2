//! From `--module` to a [`Function`] ready to serve, in [`prepare`]: fetch
//! (retrying while storage is unreachable), verify the pinned digest, lower
//! `--max-connections` to what the module's instances allow
//! ([`capacity::clamp_active`]), name the function, then load native code
//! from an AOT artifact or the cache, or compile.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use nur_module::{Module, Policy, Settings, Source};

use crate::artifact::{self, Cache};
use crate::capacity;
use crate::config::{Limits, ServeArgs};
use crate::guest::Function;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// A function ready to serve, and what start-up found out on the way.
pub struct Prepared {
    pub function: Function,
    /// `args.limits`, `--max-connections` lowered to what the module allows.
    pub limits: Limits,
    /// Where the native code came from.
    pub origin: Origin,
    /// Time from the start of `function` (the artifact's fetch included)
    /// to native code ready: `nur_module_compile_seconds`.
    pub took: Duration,
}

/// Everything between the flags and serving: loads and checks the module
/// ([`load_module`], given up when `stop` completes first: then `None`),
/// verifies `--sha256`, clamps the limits to the module
/// ([`capacity::clamp_active`], [`capacity::warn_if_above_cgroup`]), names
/// the function (`--function-name`, else the module's file name) and gets
/// its native code (`function`).
pub async fn prepare(
    args: &ServeArgs,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Option<Prepared>> {
    let module = tokio::select! {
        module = load_module(&args.module, args.static_credentials) => module?,
        () = stop => return Ok(None),
    };
    verify_digest(&args.module, &module.sha256, args.sha256.as_deref())?;
    let mut limits = args.limits.clone();
    capacity::clamp_active(&mut limits, &module);
    capacity::warn_if_above_cgroup(&limits);
    let name = args
        .function_name
        .clone()
        .unwrap_or_else(|| function_name(&args.module));
    let (function, origin, took) = function(args, &limits, &module, &name).await?;
    Ok(Some(Prepared {
        function,
        limits,
        origin,
        took,
    }))
}

/// `examples/build/echo.wasm` -> `echo`.
fn function_name(url: &str) -> String {
    let file = url.rsplit('/').next().unwrap_or(url);
    file.split('.')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("function")
        .to_string()
}

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
pub fn store_variables(static_credentials: bool) -> Option<BTreeMap<String, String>> {
    static_credentials.then(|| nur_module::policy::allowed_variables(std::env::vars()))
}

/// Only `variables` when given, else the whole environment.
pub fn settings(variables: Option<&BTreeMap<String, String>>) -> Settings<'_> {
    variables.map_or(Settings::Environment, Settings::Variables)
}

/// The bytes of the artifact at `url`, when their sha256 is `pin`.
async fn fetch_artifact(
    url: &str,
    pin: Option<&str>,
    static_credentials: bool,
) -> anyhow::Result<Vec<u8>> {
    let variables = store_variables(static_credentials);
    let settings = settings(variables.as_ref());
    let bytes = Source::parse_with(url, settings, &Policy::TRUSTED)?
        .fetch()
        .await?;
    verify_digest(url, &nur_module::sha256_hex(&bytes), pin)?;
    Ok(bytes)
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

/// Builds the function under `limits` (the clamped `args.limits`): from
/// `--artifact` when given, else from the cache when there is a sound
/// entry, else by compiling (and filling the cache).
async fn function(
    args: &ServeArgs,
    limits: &Limits,
    module: &Module,
    name: &str,
) -> anyhow::Result<(Function, Origin, Duration)> {
    Function::check_limits(module, limits)?;
    let engine = Function::engine(limits, module)?;
    let started = std::time::Instant::now();
    // An artifact that cannot be had or used costs a compile, never the
    // function: the module itself is pinned and checked.
    let artifact_bytes = match &args.artifact {
        Some(url) => fetch_artifact(
            url,
            args.artifact_sha256.as_deref(),
            args.static_credentials,
        )
        .await
        .inspect_err(|e| tracing::warn!("--artifact not used, compiling instead: {e:#}"))
        .ok(),
        None => None,
    };
    let cache = args.cache_dir.as_deref().map(Cache::new).transpose()?;
    let (module_sha, binary_owner) = (module.sha256.clone(), module.clone());
    let engine_for_work = engine.clone();
    let (compiled, origin) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let engine = engine_for_work;
        if let Some(bytes) = artifact_bytes {
            match artifact::decode(&engine, &module_sha, &bytes) {
                Ok(compiled) => return Ok((compiled, Origin::Artifact)),
                Err(e) => tracing::warn!("--artifact not used, compiling instead: {e:#}"),
            }
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
    let function = Function::new(engine, compiled, module, name, limits)
        .with_environment(&args.function_environment());
    Ok((function, origin, started.elapsed()))
}
