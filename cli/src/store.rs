//! The store modules are uploaded to: its URL (`--store`, else the
//! nurfile's `store`, else `NUR_STORE`), the content-addressed key of a
//! module, and the upload that skips bytes already there.

use nur_module::{Source, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no store to upload modules to: add `store: s3://BUCKET/PREFIX` to the nurfile, or pass --store URL, or set NUR_STORE"
    )]
    NotSet,
    #[error("store {url:?}: {reason}")]
    Unsupported { url: String, reason: String },
    #[error(
        "no credentials for the store {url}: set {variables} in the environment (for MinIO or another S3-compatible store, AWS_ENDPOINT_URL too)"
    )]
    NoCredentials {
        url: String,
        variables: &'static str,
    },
    #[error(
        "cannot upload to the store: {0}; check that the credentials in the environment may read and write there"
    )]
    Denied(SourceError),
    #[error("cannot upload to the store: {0}")]
    Source(SourceError),
}

impl From<SourceError> for StoreError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::AccessDenied { .. } => StoreError::Denied(e),
            other => StoreError::Source(other),
        }
    }
}

/// Where modules go: `s3://bucket/prefix`, `gs://...` or `az://...`.
#[derive(Debug, Clone)]
pub struct Store {
    url: String,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The bytes were written.
    Written,
    /// An object with these bytes was there already.
    AlreadyThere,
}

/// The variables that hold credentials for each scheme's store (one of
/// them must be set; `object_store` reads them as the worker does).
fn credential_variables(scheme: &str) -> Option<(&'static [&'static str], &'static str)> {
    match scheme {
        "s3" | "s3a" => Some((
            &[
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ],
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )),
        "gs" => Some((
            &[
                "GOOGLE_SERVICE_ACCOUNT",
                "GOOGLE_SERVICE_ACCOUNT_PATH",
                "GOOGLE_SERVICE_ACCOUNT_KEY",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ],
            "GOOGLE_SERVICE_ACCOUNT (a key file) or GOOGLE_APPLICATION_CREDENTIALS",
        )),
        "az" | "azure" | "abfs" | "abfss" => Some((
            &[
                "AZURE_STORAGE_ACCOUNT_KEY",
                "AZURE_STORAGE_ACCESS_KEY",
                "AZURE_STORAGE_SAS_KEY",
                "AZURE_STORAGE_SAS_TOKEN",
                "AZURE_STORAGE_CLIENT_SECRET",
                "AZURE_FEDERATED_TOKEN_FILE",
            ],
            "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
        )),
        _ => None,
    }
}

impl Store {
    /// The store from the flag, else the nurfile, else `NUR_STORE`.
    pub fn resolve(flag: Option<&str>, nurfile: Option<&str>) -> Result<Store, StoreError> {
        let env = std::env::var("NUR_STORE").ok();
        let url = flag
            .or(nurfile)
            .or(env.as_deref())
            .filter(|u| !u.trim().is_empty())
            .ok_or(StoreError::NotSet)?;
        Store::parse(url)
    }

    /// A store URL, checked: a scheme of an object store, a bucket.
    pub fn parse(url: &str) -> Result<Store, StoreError> {
        let unsupported = |reason: &str| StoreError::Unsupported {
            url: url.into(),
            reason: reason.into(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(unsupported(
                "not a URL: use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX",
            ));
        };
        if credential_variables(scheme).is_none() {
            return Err(unsupported(
                "the operator and the worker pods fetch modules from an object store: use s3://, gs:// or az://",
            ));
        }
        if rest.trim_matches('/').is_empty() {
            return Err(unsupported("no bucket: use s3://BUCKET/PREFIX"));
        }
        Ok(Store {
            url: url.trim_end_matches('/').to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of a module with these bytes: `<store>/sha256/<hex>.wasm.zst`,
    /// shared by every function with the same bytes.
    pub fn module_url(&self, sha256: &str) -> String {
        format!("{}/sha256/{sha256}.wasm.zst", self.url)
    }

    /// Fails unless the environment holds credentials for this store: a
    /// store builder without them waits on cloud metadata endpoints
    /// before it gives up.
    pub fn check_credentials(&self) -> Result<(), StoreError> {
        let scheme = self.url.split_once("://").map_or("", |(s, _)| s);
        let (names, variables) = credential_variables(scheme).expect("checked by parse");
        if names.iter().any(|n| std::env::var_os(n).is_some()) {
            Ok(())
        } else {
            Err(StoreError::NoCredentials {
                url: self.url.clone(),
                variables,
            })
        }
    }

    /// Uploads `bytes` (whose sha256 is `sha256`) unless they are there.
    pub async fn upload(&self, sha256: &str, bytes: &[u8]) -> Result<Upload, StoreError> {
        let source = Source::parse(&self.module_url(sha256))?;
        match source.version().await {
            Ok(_) => return Ok(Upload::AlreadyThere),
            Err(SourceError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        source.put(bytes.to_vec()).await?;
        Ok(Upload::Written)
    }

    /// Deletes the module at `url` (any URL of this or another store).
    pub async fn delete(url: &str) -> Result<(), StoreError> {
        Source::parse(url)?.delete().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_checked() {
        let s = Store::parse("s3://functions/my-project/").unwrap();
        assert_eq!(
            s.module_url("ab12"),
            "s3://functions/my-project/sha256/ab12.wasm.zst"
        );
        for (url, says) in [
            ("functions/x", "not a URL"),
            ("file:///tmp/x", "object store"),
            ("http://host/x", "object store"),
            ("s3://", "no bucket"),
        ] {
            let e = Store::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
