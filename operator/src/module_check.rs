//! Stage 1 of a reconcile: fetch and check a function's module with
//! `nur_module` (the worker's own check), under the operator's
//! [`nur_module::Policy`], with the variables of the function's credentials
//! Secret when it names one (only the static settings the worker pods get),
//! else with the operator's own environment.
//!
//! Results are cached by URL, the identity of the settings used and the
//! object's version (ETag), so an unchanged module is not downloaded again;
//! the version is always asked with the function's own settings, so a
//! function never gets a result it could not have fetched itself. Functions
//! sharing a module and settings share its version for most of a re-check
//! period, so a thousand functions of one module cost one HEAD a period. Storage
//! work is bounded in time, and one module is downloaded at a time, so a
//! slow or hostile store holds no reconcile slot, and no memory, for long.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

use nur_module::{LoadError, Policy, Settings, SourceError};

use crate::crd::{AbiSummary, NurFunction};
use crate::reason::Reason;

/// Cached check results at most.
const CACHED_CHECKS: usize = 4096;

/// A module that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servable {
    /// Hex sha256 of the stored object.
    pub sha256: String,
    /// Size of the stored object.
    pub size: u64,
    /// Its imports, exports and memory.
    pub abi: AbiSummary,
}

/// Why the module cannot be served: ModuleValid=False with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleProblem {
    pub reason: Reason,
    /// The error text, naming the URL and the rule, both digests or the key.
    pub message: String,
}

/// The outcome of a check that storage answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Servable(Servable),
    Problem(ModuleProblem),
}

/// Why a check could not be made; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Object storage did not answer in time, or at all.
    #[error("module: {0}")]
    Unreachable(#[source] LoadError),
    /// Reading the credentials Secret from the API server failed.
    #[error("credentials Secret {name}: {source}")]
    Credentials {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The reason of ModuleValid=Unknown while this lasts.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unreachable(_) => Reason::StorageUnreachable,
            Self::Credentials { .. } => Reason::CredentialsUnreadable,
        }
    }
}

type CacheKey = (String, String);

/// An object's version and when storage gave it.
type AskedVersion = (Instant, String);

/// What checks share: the policy, the cache and the download slot.
pub struct ModuleChecker {
    policy: Policy,
    /// Longest one check's storage work may take in all.
    bound: Duration,
    cache: Mutex<lru::LruCache<CacheKey, (String, Checked)>>,
    /// The version last asked, and when; one ask at a time per key, so
    /// checks arriving together wait for the ask in flight and share it.
    versions: Mutex<lru::LruCache<CacheKey, Arc<AsyncMutex<Option<AskedVersion>>>>>,
    /// How long an asked version is shared.
    fresh: Duration,
    downloads: Semaphore,
    /// Parsed sources: each holds its store's HTTP client (its TLS roots
    /// read and its connections kept), made once per URL and credentials
    /// rather than per check.
    sources: Mutex<lru::LruCache<CacheKey, nur_module::Source>>,
}

impl ModuleChecker {
    /// A checker fetching under `policy`; each check's storage work ends
    /// after `bound`; functions re-checked every `recheck` share a version
    /// asked less than nine tenths of it ago (so each function still asks
    /// anew at its own re-check).
    pub fn new(policy: Policy, bound: Duration, recheck: Duration) -> Self {
        let entries = NonZeroUsize::new(CACHED_CHECKS).expect("not zero");
        Self {
            policy,
            bound,
            cache: Mutex::new(lru::LruCache::new(entries)),
            versions: Mutex::new(lru::LruCache::new(entries)),
            fresh: recheck.mul_f64(0.9),
            downloads: Semaphore::new(1),
            sources: Mutex::new(lru::LruCache::new(entries)),
        }
    }

    /// The object's version: shared when asked recently with the same
    /// settings, else asked, once for all the checks that want it meanwhile.
    async fn version(
        &self,
        source: &nur_module::Source,
        key: &CacheKey,
    ) -> Result<String, SourceError> {
        let entry = self
            .versions
            .lock()
            .unwrap()
            .get_or_insert(key.clone(), Default::default)
            .clone();
        let mut asked = entry.lock().await;
        if let Some((at, version)) = asked.as_ref()
            && at.elapsed() < self.fresh
        {
            return Ok(version.clone());
        }
        let version = source.version().await?;
        *asked = Some((Instant::now(), version.clone()));
        Ok(version)
    }

    /// Fetches and checks `f`'s module, and compares it with the pin.
    pub async fn check(&self, client: &Client, f: &NurFunction) -> Result<Checked, Error> {
        let url = &f.spec.module.url;
        let variables = match &f.spec.module.credentials_secret {
            None => None,
            Some(name) => match secret_variables(client, f, name).await? {
                Ok(variables) => Some(variables),
                Err(problem) => return Ok(Checked::Problem(problem)),
            },
        };
        if let Some(vars) = &variables
            && let Err(e) = nur_module::policy::check_variables(vars)
        {
            return Ok(Checked::Problem(ModuleProblem {
                reason: Reason::CredentialsKeyNotAllowed,
                message: format!(
                    "Secret {} named by spec.module.credentialsSecret: {e}",
                    f.spec
                        .module
                        .credentials_secret
                        .as_deref()
                        .unwrap_or_default()
                ),
            }));
        }
        let settings = variables
            .as_ref()
            .map_or(Settings::Environment, Settings::Variables);
        let identity = identity(variables.as_ref());
        let checked = tokio::time::timeout(self.bound, self.fetch(url, settings, identity))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unreachable(LoadError::Source(
                    SourceError::Unreachable {
                        url: url.clone(),
                        cause: format!("no whole answer within {:?}", self.bound),
                    },
                )))
            })?;
        Ok(match (checked, &f.spec.module.sha256) {
            (Checked::Servable(m), Some(pin)) if *pin != m.sha256 => {
                Checked::Problem(ModuleProblem {
                    reason: Reason::DigestMismatch,
                    message: format!(
                        "{url}: sha256 is {}, but spec.module.sha256 pins {pin}; running pods are left alone",
                        m.sha256
                    ),
                })
            }
            (checked, _) => checked,
        })
    }

    async fn fetch(
        &self,
        url: &str,
        settings: Settings<'_>,
        identity: String,
    ) -> Result<Checked, Error> {
        let outcome = |e: SourceError| {
            let e = LoadError::from(e);
            if e.is_transient() {
                Err(Error::Unreachable(e))
            } else {
                Ok(Checked::Problem(problem(&e)))
            }
        };
        let key = (url.to_string(), identity);
        let cached = self.sources.lock().unwrap().get(&key).cloned();
        let source = match cached {
            Some(source) => source,
            None => match nur_module::Source::parse_with(url, settings, &self.policy) {
                Ok(source) => {
                    let mut sources = self.sources.lock().unwrap();
                    sources.put(key.clone(), source.clone());
                    source
                }
                Err(e) => return outcome(e),
            },
        };
        let version = match self.version(&source, &key).await {
            Ok(v) => v,
            Err(e) => return outcome(e),
        };
        if let Some((v, result)) = self.cache.lock().unwrap().get(&key)
            && *v == version
        {
            return Ok(result.clone());
        }
        let _slot = self.downloads.acquire().await.expect("never closed");
        // Cache under the version of the bytes read, not the one asked above:
        // the object may have changed in between.
        let (stored, version) = match source.fetch_versioned().await {
            Ok(fetched) => fetched,
            Err(e) => return outcome(e),
        };
        let result = tokio::task::spawn_blocking(move || {
            match nur_module::Module::from_stored(source, stored) {
                Ok(m) => Checked::Servable(Servable {
                    abi: AbiSummary::of(&m.summary),
                    sha256: m.sha256,
                    size: m.size,
                }),
                Err(e) => Checked::Problem(problem(&e)),
            }
        })
        .await
        .expect("the check does not panic");
        self.cache
            .lock()
            .unwrap()
            .put(key, (version, result.clone()));
        Ok(result)
    }
}

/// Who the settings fetch as: the operator's environment, or a digest of
/// the Secret's variables (never the secrets themselves).
fn identity(variables: Option<&BTreeMap<String, String>>) -> String {
    let Some(vars) = variables else {
        return "environment".into();
    };
    let mut digest = Sha256::new();
    for (k, v) in vars {
        digest.update(k.as_bytes());
        digest.update([0]);
        digest.update(v.as_bytes());
        digest.update([0]);
    }
    hex::encode(digest.finalize())
}

/// The variables of the credentials Secret `name`; a missing Secret is a
/// problem of the function.
async fn secret_variables(
    client: &Client,
    f: &NurFunction,
    name: &str,
) -> Result<Result<BTreeMap<String, String>, ModuleProblem>, Error> {
    let namespace = f.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| Error::Credentials {
            name: format!("{namespace}/{name}"),
            source,
        })?;
    let Some(secret) = secret else {
        return Ok(Err(ModuleProblem {
            reason: Reason::CredentialsSecretNotFound,
            message: format!(
                "Secret {namespace}/{name} named by spec.module.credentialsSecret does not exist"
            ),
        }));
    };
    Ok(Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()))
}

/// The condition for a module that cannot be served. The message never
/// quotes bytes that were read: a URL may name anything its author can
/// reach, and the status is for everyone who may read the function.
pub fn problem(e: &LoadError) -> ModuleProblem {
    use nur_module::AbiError;
    let url = match e {
        LoadError::Source(_) => "",
        LoadError::Zstd { url, .. } | LoadError::Abi { url, .. } => url,
    };
    let (reason, message) = match e {
        LoadError::Source(SourceError::NotFound { .. }) => (Reason::ModuleNotFound, None),
        LoadError::Source(SourceError::AccessDenied { .. }) => (Reason::AccessDenied, None),
        LoadError::Source(SourceError::TooLarge { .. }) => (Reason::ModuleTooLarge, None),
        LoadError::Source(SourceError::Refused { .. }) => (Reason::URLNotAllowed, None),
        LoadError::Source(_) => (Reason::UnsupportedURL, None),
        LoadError::Abi {
            error: AbiError::Violations(_),
            ..
        } => (Reason::BreaksABI, None),
        LoadError::Abi {
            error: AbiError::NotWasm(_),
            ..
        } => (
            Reason::InvalidModule,
            Some(format!(
                "{url}: not WebAssembly: neither a binary module (\\0asm) nor WAT text that \
                 parses (`nur-worker check` shows where it fails)"
            )),
        ),
        LoadError::Abi { .. } => (Reason::InvalidModule, None),
        LoadError::Zstd { .. } => (
            Reason::InvalidModule,
            Some(format!("{url}: corrupt zstd data")),
        ),
    };
    ModuleProblem {
        reason,
        message: message.unwrap_or_else(|| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(url: &str, bytes: &[u8]) -> LoadError {
        let source = nur_module::Source::parse(url).unwrap();
        nur_module::Module::from_stored(source, bytes.to_vec()).unwrap_err()
    }

    #[test]
    fn module_problems_name_the_rule() {
        let wat = br#"(module (import "wasi_snapshot_preview1" "fd_write" (func)))"#;
        let p = problem(&load("s3://b/k.wasm", wat));
        assert_eq!(p.reason, Reason::BreaksABI);
        assert!(
            p.message.starts_with("s3://b/k.wasm: breaks the Nur ABI: "),
            "{}",
            p.message
        );
        assert!(
            p.message.contains("WASI is not supported yet"),
            "{}",
            p.message
        );
    }

    #[test]
    fn fetched_bytes_are_never_quoted() {
        for bytes in [
            &b"root:x:0:0:root:/root:/bin/bash\n"[..],
            b"(module (func $secret-token-1234 (param i32)",
            b"\x28\xb5\x2f\xfdsecret",
        ] {
            let p = problem(&load("http://svc/m.wasm", bytes));
            assert_eq!(p.reason, Reason::InvalidModule);
            for secret in ["root", "secret", "726f6f74", "7365637265"] {
                assert!(!p.message.contains(secret), "{}", p.message);
            }
        }
    }

    #[test]
    fn identities_differ_by_any_variable() {
        let a = BTreeMap::from([("AWS_ACCESS_KEY_ID".to_string(), "a".to_string())]);
        let b = BTreeMap::from([("AWS_ACCESS_KEY_ID".to_string(), "b".to_string())]);
        assert_ne!(identity(Some(&a)), identity(Some(&b)));
        assert_ne!(identity(Some(&a)), identity(None));
        assert_eq!(identity(Some(&a)).len(), 64);
    }
}
