//! Objects in the test environment's MinIO, and the AWS_* variables a
//! worker process needs to reach it.

use std::collections::HashMap;

use nur_testkit::TestEnv;
use nur_testkit::object_store::ObjectStoreExt;
use nur_testkit::object_store::path::Path as Key;

/// Writes (or replaces) `key` in the test bucket; returns its s3:// URL.
pub fn put(env: &TestEnv, key: &str, bytes: Vec<u8>) -> String {
    let store = env.object_store().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.put(&Key::from(key), bytes.into()))
        .unwrap();
    format!("s3://{}/{key}", env.bucket())
}

/// Uploads `bytes` under a key unique to this test process and `prefix`.
pub fn upload(env: &TestEnv, prefix: &str, name: &str, bytes: Vec<u8>) -> String {
    put(
        env,
        &format!("{prefix}/{}/{name}", std::process::id()),
        bytes,
    )
}

/// The key of an s3:// URL made by [`put`].
pub fn key(env: &TestEnv, url: &str) -> String {
    let bucket = format!("s3://{}/", env.bucket());
    url.strip_prefix(&bucket).unwrap().to_string()
}

/// The AWS_* variables of the test environment, for a worker process.
pub fn aws(env: &TestEnv) -> HashMap<String, String> {
    env.vars()
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// MinIO's `host:port`.
pub fn minio(env: &TestEnv) -> String {
    env.s3_endpoint().trim_start_matches("http://").to_string()
}
