//! Where a module comes from, and fetching its bytes with `object_store`.
//!
//! Over 400 lines on purpose: one parse covers files and four stores, each
//! with its own builder, and one fetch path streams all of them.
//!
//! A source is a local path, or a URL: `file://`, `s3://bucket/key`,
//! `gs://bucket/key`, `az://container/key` (also `abfs(s)://`, `azure://`),
//! `http(s)://`. Cloud credentials and endpoints come from the standard
//! environment of each store (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, web identity /
//! IRSA through `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`;
//! `GOOGLE_*`; `AZURE_*`), or, for a tenant's function, only from the
//! static settings of its credentials Secret ([`Settings::Variables`]).
//! Every fetch follows a [`Policy`]: files, local addresses, timeouts and
//! the size limit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::policy::{self, Policy};
use crate::transport::{self, Connector, RefusedAddress};

pub use crate::policy::MAX_MODULE_BYTES;

/// Why a module could not be fetched. Every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{url}: unsupported URL ({reason}); use a path, file://, s3://, gs://, az:// or http(s)://"
    )]
    Unsupported { url: String, reason: String },
    #[error("{url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: access denied: {cause}")]
    AccessDenied { url: String, cause: String },
    #[error("{url}: {size} is more than the {limit}-byte module size limit")]
    TooLarge {
        url: String,
        /// "N bytes", or what was read when the size was not known first.
        size: String,
        limit: u64,
    },
    #[error("{url}: storage unreachable: {cause}")]
    Unreachable { url: String, cause: String },
}

impl SourceError {
    /// Whether trying again later may succeed (storage down, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// A parsed module location.
#[derive(Debug, Clone)]
pub struct Source {
    url: String,
    location: Location,
    policy: Policy,
}

#[derive(Debug, Clone)]
enum Location {
    /// A local file, read directly (relative paths and `..` allowed).
    File(PathBuf),
    /// An object in a store.
    Object {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
    },
}

impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

/// Where a store's settings and credentials come from.
#[derive(Debug, Clone, Copy)]
pub enum Settings<'a> {
    /// The process environment, as each store's `from_env` reads it.
    Environment,
    /// Only these variables (names as in the environment, e.g.
    /// `AWS_ACCESS_KEY_ID`): what a worker pod sees from a credentials
    /// Secret. Only [`policy::ALLOWED_VARIABLES`] may be among them; without
    /// a credential, requests go unsigned.
    Variables(&'a BTreeMap<String, String>),
}

impl Settings<'_> {
    /// A store builder: `from_env` for [`Settings::Environment`], else the
    /// default builder configured with the variables that start with
    /// `prefix` (lowercased, as `from_env` does), unsigned when none of
    /// them is a credential.
    fn builder<B, K>(
        self,
        from_env: fn() -> B,
        prefix: &str,
        with_config: fn(B, K, String) -> B,
        unsigned: fn(B) -> B,
    ) -> B
    where
        B: Default,
        K: FromStr,
    {
        let Settings::Variables(vars) = self else {
            return from_env();
        };
        let mine = || vars.keys().filter(|name| name.starts_with(prefix));
        let signed = mine().any(|name| policy::CREDENTIAL_VARIABLES.contains(&name.as_str()));
        let builder = mine()
            .filter_map(|name| Some((name.to_ascii_lowercase().parse().ok()?, &vars[name])))
            .fold(B::default(), |b, (key, value)| {
                with_config(b, key, value.clone())
            });
        if signed { builder } else { unsigned(builder) }
    }

    /// Whether `{prefix}ALLOW_HTTP` is set to true (the client options
    /// replace the builder's, so it is carried over here).
    fn allow_http(self, prefix: &str) -> bool {
        let name = format!("{prefix}ALLOW_HTTP");
        let value = match self {
            Settings::Environment => std::env::var(&name).ok(),
            Settings::Variables(vars) => vars.get(&name).cloned(),
        };
        value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// Refuses forbidden variables and endpoints at local addresses.
    fn check(self, policy: &Policy) -> Result<(), String> {
        let Settings::Variables(vars) = self else {
            return Ok(());
        };
        policy::check_variables(vars).map_err(|e| e.to_string())?;
        if policy.allow_local_addresses {
            return Ok(());
        }
        for name in policy::ENDPOINT_VARIABLES {
            if let Some(endpoint) = vars.get(*name) {
                let url = url::Url::parse(endpoint)
                    .map_err(|e| format!("{name} {endpoint:?} is not a URL: {e}"))?;
                literal_host_allowed(&url).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Refuses a URL whose host is a local IP address written out (names are
/// checked when they are resolved).
fn literal_host_allowed(url: &url::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.into(),
        Some(url::Host::Ipv6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    match policy::local_address(ip) {
        Some(what) => Err(format!(
            "{ip} is {what}, which module URLs and endpoints may not reach"
        )),
        None => Ok(()),
    }
}

/// An object's ETag, or its size and modification time.
fn object_version(meta: &object_store::ObjectMeta) -> String {
    meta.e_tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp_millis()))
}

impl Source {
    /// Parses a path or a URL; reads the store's credentials from the
    /// environment, under [`Policy::TRUSTED`].
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        Self::parse_with(url, Settings::Environment, &Policy::TRUSTED)
    }

    /// Parses a path or a URL, with the store's settings from `settings`,
    /// refusing what `policy` does not allow.
    pub fn parse_with(url: &str, settings: Settings, policy: &Policy) -> Result<Self, SourceError> {
        let unsupported = |reason: String| SourceError::Unsupported {
            url: url.into(),
            reason,
        };
        let refused = |reason: String| SourceError::Refused {
            url: url.into(),
            reason,
        };
        settings.check(policy).map_err(refused)?;
        let Some((scheme, _)) = url.split_once("://") else {
            return Self::local(url, PathBuf::from(url), policy);
        };
        let parsed = url::Url::parse(url).map_err(|e| unsupported(e.to_string()))?;
        let path =
            || ObjectPath::from_url_path(parsed.path()).map_err(|e| unsupported(e.to_string()));
        let options = transport::client_options(policy);
        let connector = Connector::new(policy);
        let built = match scheme {
            "file" => return Self::local(url, PathBuf::from(parsed.path()), policy),
            "s3" | "s3a" => settings
                .builder(
                    AmazonS3Builder::from_env,
                    "AWS_",
                    AmazonS3Builder::with_config,
                    |b| b.with_skip_signature(true),
                )
                .with_url(url)
                .with_client_options(options.with_allow_http(settings.allow_http("AWS_")))
                .with_http_connector(connector)
                .with_retry(transport::retry(policy))
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "gs" => settings
                .builder(
                    GoogleCloudStorageBuilder::from_env,
                    "GOOGLE_",
                    GoogleCloudStorageBuilder::with_config,
                    |b| b.with_skip_signature(true),
                )
                .with_url(url)
                .with_client_options(options.with_allow_http(settings.allow_http("GOOGLE_")))
                .with_http_connector(connector)
                .with_retry(transport::retry(policy))
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "az" | "azure" | "abfs" | "abfss" | "adl" => settings
                .builder(
                    MicrosoftAzureBuilder::from_env,
                    "AZURE_",
                    MicrosoftAzureBuilder::with_config,
                    |b| b.with_skip_signature(true),
                )
                .with_url(url)
                .with_client_options(options.with_allow_http(settings.allow_http("AZURE_")))
                .with_http_connector(connector)
                .with_retry(transport::retry(policy))
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "http" | "https" => {
                if !policy.allow_local_addresses {
                    literal_host_allowed(&parsed).map_err(refused)?;
                }
                let origin = parsed.origin().ascii_serialization();
                HttpBuilder::new()
                    .with_url(origin)
                    .with_client_options(options.with_allow_http(true))
                    .with_http_connector(connector)
                    .with_retry(transport::retry(policy))
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            other => return Err(unsupported(format!("unknown scheme {other}://"))),
        };
        Ok(Self {
            url: url.into(),
            location: Location::Object {
                store: built.map_err(|e| unsupported(e.to_string()))?,
                path: path()?,
            },
            policy: *policy,
        })
    }

    fn local(url: &str, path: PathBuf, policy: &Policy) -> Result<Self, SourceError> {
        if !policy.allow_files {
            return Err(SourceError::Refused {
                url: url.into(),
                reason: "local files are not allowed here; use s3://, gs://, az:// or \
                         http(s):// (the operator reads files only with --allow-file-modules)"
                    .into(),
            });
        }
        Ok(Self {
            url: url.into(),
            location: Location::File(path),
            policy: *policy,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The policy this source was opened under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Reads the whole object, refusing more than the policy's size limit.
    pub async fn fetch(&self) -> Result<Vec<u8>, SourceError> {
        self.fetch_versioned().await.map(|(bytes, _)| bytes)
    }

    /// Reads the whole object like [`Source::fetch`], with the version (as
    /// [`Source::version`] gives it) of the object these bytes are from.
    /// The bytes are read into one buffer of the announced size, and the
    /// read stops as soon as they pass the limit.
    pub async fn fetch_versioned(&self) -> Result<(Vec<u8>, String), SourceError> {
        match &self.location {
            Location::File(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| self.io_error(e))?;
                if !meta.is_file() {
                    return Err(SourceError::Refused {
                        url: self.url.clone(),
                        reason: "not a regular file".into(),
                    });
                }
                self.check_size(meta.len())?;
                let version = self.file_version(&meta)?;
                let bytes = self.read_file(path, meta.len()).await?;
                Ok((bytes, version))
            }
            Location::Object { store, path } => {
                let got = store.get(path).await.map_err(|e| self.error(e))?;
                self.check_size(got.meta.size)?;
                let version = object_version(&got.meta);
                let mut bytes = Vec::with_capacity(got.meta.size as usize);
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.error(e))?;
                    if (bytes.len() + chunk.len()) as u64 > self.policy.max_bytes {
                        return Err(self.too_large("the download"));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok((bytes, version))
            }
        }
    }

    async fn read_file(&self, path: &std::path::Path, size: u64) -> Result<Vec<u8>, SourceError> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.io_error(e))?;
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(self.policy.max_bytes + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| self.io_error(e))?;
        if bytes.len() as u64 > self.policy.max_bytes {
            return Err(self.too_large("the file"));
        }
        Ok(bytes)
    }

    /// A tag that changes when the object changes (its ETag, or its size and
    /// modification time), without downloading it.
    pub async fn version(&self) -> Result<String, SourceError> {
        match &self.location {
            Location::File(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| self.io_error(e))?;
                self.file_version(&meta)
            }
            Location::Object { store, path } => {
                let meta = store.head(path).await.map_err(|e| self.error(e))?;
                Ok(object_version(&meta))
            }
        }
    }

    /// Writes `bytes` as the object (a file is written in place).
    pub async fn put(&self, bytes: Vec<u8>) -> Result<(), SourceError> {
        match &self.location {
            Location::File(path) => tokio::fs::write(path, bytes)
                .await
                .map_err(|e| self.io_error(e)),
            Location::Object { store, path } => store
                .put(path, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| self.error(e)),
        }
    }

    /// Deletes the object; one that is not there is not an error.
    pub async fn delete(&self) -> Result<(), SourceError> {
        let result = match &self.location {
            Location::File(path) => tokio::fs::remove_file(path)
                .await
                .map_err(|e| self.io_error(e)),
            Location::Object { store, path } => store.delete(path).await.map_err(|e| self.error(e)),
        };
        match result {
            Err(SourceError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    fn file_version(&self, meta: &std::fs::Metadata) -> Result<String, SourceError> {
        let modified = meta.modified().map_err(|e| self.io_error(e))?;
        Ok(format!("{}-{modified:?}", meta.len()))
    }

    fn check_size(&self, size: u64) -> Result<(), SourceError> {
        if size > self.policy.max_bytes {
            return Err(self.too_large(&format!("{size} bytes")));
        }
        Ok(())
    }

    /// The error for `what` passing the size limit.
    pub fn too_large(&self, what: &str) -> SourceError {
        SourceError::TooLarge {
            url: self.url.clone(),
            size: what.into(),
            limit: self.policy.max_bytes,
        }
    }

    fn io_error(&self, error: std::io::Error) -> SourceError {
        let url = self.url.clone();
        match error.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound { url },
            std::io::ErrorKind::PermissionDenied => SourceError::AccessDenied {
                url,
                cause: error.to_string(),
            },
            _ => SourceError::Unreachable {
                url,
                cause: error.to_string(),
            },
        }
    }

    fn error(&self, error: object_store::Error) -> SourceError {
        let url = self.url.clone();
        if let Some(refused) = find_source::<RefusedAddress>(&error) {
            return SourceError::Refused {
                url,
                reason: refused.to_string(),
            };
        }
        match error {
            object_store::Error::NotFound { .. } => SourceError::NotFound { url },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => SourceError::AccessDenied {
                url,
                cause: source.to_string(),
            },
            other => SourceError::Unreachable {
                url,
                cause: chain(&other),
            },
        }
    }
}

/// The first error of type `E` among `error` and its sources.
fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// An error and its sources, joined with ": ".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert_eq!(Source::parse("a/b.wasm").unwrap().url(), "a/b.wasm");
        assert!(Source::parse("file:///tmp/b.wasm").is_ok());
        assert!(Source::parse("https://example.com/f/echo.wasm").is_ok());
        let err = Source::parse("ftp://host/x.wasm").unwrap_err().to_string();
        assert_eq!(
            err,
            "ftp://host/x.wasm: unsupported URL (unknown scheme ftp://); use a path, file://, s3://, gs://, az:// or http(s)://"
        );
    }

    #[tokio::test]
    async fn missing_file_is_not_found() {
        let err = Source::parse("/nonexistent/echo.wasm")
            .unwrap()
            .fetch()
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "/nonexistent/echo.wasm: not found");
    }

    #[tokio::test]
    async fn unreachable_http_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/echo.wasm");
        let err = Source::parse(&url).unwrap().fetch().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{url}: storage unreachable")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fetched_bytes_come_with_their_own_version() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let path = ObjectPath::from("fns/echo.wasm");
        let source = Source {
            url: "memory:///fns/echo.wasm".into(),
            location: Location::Object {
                store: store.clone(),
                path: path.clone(),
            },
            policy: Policy::TRUSTED,
        };
        store.put(&path, b"first".to_vec().into()).await.unwrap();
        let (bytes, first) = source.fetch_versioned().await.unwrap();
        assert_eq!(
            (bytes.as_slice(), &first),
            (&b"first"[..], &source.version().await.unwrap())
        );
        store.put(&path, b"second".to_vec().into()).await.unwrap();
        let (bytes, second) = source.fetch_versioned().await.unwrap();
        assert_eq!(bytes, b"second");
        assert_ne!(first, second);
        assert_eq!(second, source.version().await.unwrap());
    }
}
