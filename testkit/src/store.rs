//! Objects in the test environment's MinIO, the AWS_* variables a process
//! needs to reach it, and a fault-injecting proxy in front of it.

pub mod proxy;

use std::collections::HashMap;

use object_store::ObjectStoreExt;
use object_store::path::Path as Key;

use crate::TestEnv;

pub use proxy::Proxy;

/// Writes (or replaces) `key` in the test bucket; returns its s3:// URL.
pub async fn put(env: &TestEnv, key: &str, bytes: Vec<u8>) -> String {
    env.object_store()
        .unwrap()
        .put(&Key::from(key), bytes.into())
        .await
        .unwrap();
    url(env, key)
}

/// [`put`] from a test without a runtime.
pub fn put_blocking(env: &TestEnv, key: &str, bytes: Vec<u8>) -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(put(env, key, bytes))
}

/// Uploads `bytes` under a key unique to this test process and `prefix`
/// (`PREFIX/PID/NAME`); returns its s3:// URL. For tests without a runtime.
pub fn upload(env: &TestEnv, prefix: &str, name: &str, bytes: Vec<u8>) -> String {
    put_blocking(
        env,
        &format!("{prefix}/{}/{name}", std::process::id()),
        bytes,
    )
}

/// The s3:// URL of `key` in the test bucket.
pub fn url(env: &TestEnv, key: &str) -> String {
    format!("s3://{}/{key}", env.bucket())
}

/// The key of an s3:// URL made by [`put`].
pub fn key(env: &TestEnv, url: &str) -> String {
    let bucket = format!("s3://{}/", env.bucket());
    url.strip_prefix(&bucket).unwrap().to_string()
}

/// The AWS_* variables of the test environment, for a process.
pub fn aws(env: &TestEnv) -> HashMap<String, String> {
    env.vars()
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// [`aws`], sorted by name, as a credentials Secret holds them.
pub fn aws_sorted(env: &TestEnv) -> Vec<(String, String)> {
    let mut vars: Vec<_> = aws(env).into_iter().collect();
    vars.sort();
    vars
}

/// MinIO's `host:port`.
pub fn minio(env: &TestEnv) -> String {
    env.s3_endpoint().trim_start_matches("http://").to_string()
}
