//! Where a module comes from.
//!
//! A source is a local path or a `file://` URL. Object storage (`s3://`,
//! `gs://`, `az://`, `http(s)://`) plugs in here as further variants of
//! [`Source`]; everything above this file only sees [`Source::fetch`].

use std::path::PathBuf;

/// Why a module could not be fetched. Every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{url}: unsupported scheme {scheme}:// (supported: file:// or a path)")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: access denied")]
    AccessDenied { url: String },
    #[error("{url}: {size} bytes is more than the {limit}-byte module size limit")]
    TooLarge { url: String, size: u64, limit: u64 },
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// The largest module a worker accepts.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// A parsed module location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on the local file system.
    File(PathBuf),
}

impl Source {
    /// Parses a path or a URL.
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        match url.split_once("://") {
            Some(("file", path)) => Ok(Self::File(PathBuf::from(path))),
            Some((scheme, _))
                if scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                Err(SourceError::UnsupportedScheme {
                    url: url.into(),
                    scheme: scheme.into(),
                })
            }
            _ => Ok(Self::File(PathBuf::from(url))),
        }
    }

    /// Reads the whole module, refusing more than [`MAX_MODULE_BYTES`].
    pub async fn fetch(&self) -> Result<Vec<u8>, SourceError> {
        match self {
            Self::File(path) => {
                let url = path.display().to_string();
                let io = |source: std::io::Error| match source.kind() {
                    std::io::ErrorKind::NotFound => SourceError::NotFound { url: url.clone() },
                    std::io::ErrorKind::PermissionDenied => {
                        SourceError::AccessDenied { url: url.clone() }
                    }
                    _ => SourceError::Io {
                        url: url.clone(),
                        source,
                    },
                };
                let size = tokio::fs::metadata(path).await.map_err(io)?.len();
                if size > MAX_MODULE_BYTES {
                    return Err(SourceError::TooLarge {
                        url,
                        size,
                        limit: MAX_MODULE_BYTES,
                    });
                }
                tokio::fs::read(path).await.map_err(io)
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls() {
        assert_eq!(
            Source::parse("a/b.wasm").unwrap(),
            Source::File("a/b.wasm".into())
        );
        assert_eq!(
            Source::parse("file:///tmp/b.wasm").unwrap(),
            Source::File("/tmp/b.wasm".into())
        );
        let err = Source::parse("ftp://host/x.wasm").unwrap_err().to_string();
        assert_eq!(
            err,
            "ftp://host/x.wasm: unsupported scheme ftp:// (supported: file:// or a path)"
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
}
