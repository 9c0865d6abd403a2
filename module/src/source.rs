//! Where a module comes from, and fetching its bytes with `object_store`.
//!
//! A source is a local path, or a URL: `file://`, `s3://bucket/key`,
//! `gs://bucket/key`, `az://container/key` (also `abfs(s)://`, `azure://`),
//! `http(s)://`. Cloud credentials and endpoints come from the standard
//! environment of each store (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, web identity /
//! IRSA through `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`;
//! `GOOGLE_*`; `AZURE_*`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

/// Why a module could not be fetched. Every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "{url}: unsupported URL ({reason}); use a path, file://, s3://, gs://, az:// or http(s)://"
    )]
    Unsupported { url: String, reason: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: access denied: {cause}")]
    AccessDenied { url: String, cause: String },
    #[error("{url}: {size} bytes is more than the {limit}-byte module size limit")]
    TooLarge { url: String, size: u64, limit: u64 },
    #[error("{url}: storage unreachable: {cause}")]
    Unreachable { url: String, cause: String },
}

impl SourceError {
    /// Whether trying again later may succeed (storage down, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// The largest module a worker accepts, compressed or not.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// A parsed module location.
#[derive(Debug, Clone)]
pub struct Source {
    url: String,
    location: Location,
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

/// How long one fetch may retry inside the client before it reports the
/// storage unreachable (callers retry with their own backoff on top).
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

/// Where a store's settings and credentials come from.
#[derive(Debug, Clone, Copy)]
pub enum Settings<'a> {
    /// The process environment, as each store's `from_env` reads it.
    Environment,
    /// Only these variables (names as in the environment, e.g.
    /// `AWS_ACCESS_KEY_ID`): what a worker pod sees from a credentials
    /// Secret.
    Variables(&'a BTreeMap<String, String>),
}

impl Settings<'_> {
    /// A store builder: `from_env` for [`Settings::Environment`], else the
    /// default builder configured with the variables that start with
    /// `prefix` (lowercased, as `from_env` does).
    fn builder<B, K>(
        self,
        from_env: fn() -> B,
        prefix: &str,
        with_config: fn(B, K, String) -> B,
    ) -> B
    where
        B: Default,
        K: FromStr,
    {
        let Settings::Variables(vars) = self else {
            return from_env();
        };
        vars.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter_map(|(name, value)| Some((name.to_ascii_lowercase().parse().ok()?, value)))
            .fold(B::default(), |b, (key, value)| {
                with_config(b, key, value.clone())
            })
    }
}

/// An object's ETag, or its size and modification time.
fn object_version(meta: &object_store::ObjectMeta) -> String {
    meta.e_tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp_millis()))
}

impl Source {
    /// Parses a path or a URL; reads the store's credentials from the environment.
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        Self::parse_with(url, Settings::Environment)
    }

    /// Parses a path or a URL, with the store's settings from `settings`.
    pub fn parse_with(url: &str, settings: Settings) -> Result<Self, SourceError> {
        let unsupported = |reason: String| SourceError::Unsupported {
            url: url.into(),
            reason,
        };
        let Some((scheme, _)) = url.split_once("://") else {
            return Self::local(url, PathBuf::from(url));
        };
        let parsed = url::Url::parse(url).map_err(|e| unsupported(e.to_string()))?;
        let path =
            || ObjectPath::from_url_path(parsed.path()).map_err(|e| unsupported(e.to_string()));
        let built = match scheme {
            "file" => return Self::local(url, PathBuf::from(parsed.path())),
            "s3" | "s3a" => settings
                .builder(
                    AmazonS3Builder::from_env,
                    "AWS_",
                    AmazonS3Builder::with_config,
                )
                .with_url(url)
                .with_retry(retry())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "gs" => settings
                .builder(
                    GoogleCloudStorageBuilder::from_env,
                    "GOOGLE_",
                    GoogleCloudStorageBuilder::with_config,
                )
                .with_url(url)
                .with_retry(retry())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "az" | "azure" | "abfs" | "abfss" | "adl" => settings
                .builder(
                    MicrosoftAzureBuilder::from_env,
                    "AZURE_",
                    MicrosoftAzureBuilder::with_config,
                )
                .with_url(url)
                .with_retry(retry())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            "http" | "https" => {
                let origin = parsed.origin().ascii_serialization();
                let options = ClientOptions::new().with_allow_http(true);
                let store = HttpBuilder::new()
                    .with_url(origin)
                    .with_client_options(options)
                    .with_retry(retry())
                    .build()
                    .map_err(|e| unsupported(e.to_string()))?;
                return Ok(Self {
                    url: url.into(),
                    location: Location::Object {
                        store: Arc::new(store),
                        path: path()?,
                    },
                });
            }
            other => return Err(unsupported(format!("unknown scheme {other}://"))),
        };
        Ok(Self {
            url: url.into(),
            location: Location::Object {
                store: built.map_err(|e| unsupported(e.to_string()))?,
                path: path()?,
            },
        })
    }

    fn local(url: &str, path: PathBuf) -> Result<Self, SourceError> {
        Ok(Self {
            url: url.into(),
            location: Location::File(path),
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads the whole object, refusing more than [`MAX_MODULE_BYTES`].
    pub async fn fetch(&self) -> Result<Vec<u8>, SourceError> {
        self.fetch_versioned().await.map(|(bytes, _)| bytes)
    }

    /// Reads the whole object like [`Source::fetch`], with the version (as
    /// [`Source::version`] gives it) of the object these bytes are from.
    pub async fn fetch_versioned(&self) -> Result<(Vec<u8>, String), SourceError> {
        match &self.location {
            Location::File(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| self.io_error(e))?;
                self.check_size(meta.len())?;
                let version = self.file_version(&meta)?;
                let bytes = tokio::fs::read(path).await.map_err(|e| self.io_error(e))?;
                Ok((bytes, version))
            }
            Location::Object { store, path } => {
                let got = store.get(path).await.map_err(|e| self.error(e))?;
                self.check_size(got.meta.size)?;
                let version = object_version(&got.meta);
                let bytes = got.bytes().await.map_err(|e| self.error(e))?;
                Ok((bytes.to_vec(), version))
            }
        }
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

    fn file_version(&self, meta: &std::fs::Metadata) -> Result<String, SourceError> {
        let modified = meta.modified().map_err(|e| self.io_error(e))?;
        Ok(format!("{}-{modified:?}", meta.len()))
    }

    fn check_size(&self, size: u64) -> Result<(), SourceError> {
        if size > MAX_MODULE_BYTES {
            return Err(SourceError::TooLarge {
                url: self.url.clone(),
                size,
                limit: MAX_MODULE_BYTES,
            });
        }
        Ok(())
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

    #[tokio::test]
    async fn variables_replace_the_environment() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let vars = BTreeMap::from([
            ("AWS_ENDPOINT_URL".to_string(), endpoint),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
            (
                "AWS_ACCESS_KEY_ID".to_string(),
                "from-the-secret".to_string(),
            ),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "x".to_string()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("NOT_A_STORE_SETTING".to_string(), "ignored".to_string()),
        ]);
        let source = Source::parse_with("s3://fns/echo.wasm", Settings::Variables(&vars)).unwrap();
        let request = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut head = [0; 4096];
            let n = socket.read(&mut head).unwrap();
            String::from_utf8_lossy(&head[..n]).into_owned()
        });
        // Nobody answers: the fetch fails, after the request was sent.
        let fetch = tokio::spawn(async move { source.fetch().await });
        let request = tokio::task::spawn_blocking(move || request.join().unwrap())
            .await
            .unwrap();
        fetch.abort();
        assert!(request.starts_with("GET /fns/echo.wasm "), "{request}");
        assert!(request.contains("Credential=from-the-secret/"), "{request}");
    }
}
