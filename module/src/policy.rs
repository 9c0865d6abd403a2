//! What a fetch may reach: the rules the operator applies to modules and
//! credentials that tenants name, and the defaults the worker and the
//! command line use for their own.
//!
//! - [`Policy`]: files or not, loopback and link-local addresses or not, how
//!   long storage may keep a request waiting, the largest module.
//! - [`check_variables`]: only static credential settings may come from a
//!   tenant's Secret. A key like `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
//!   would make the store read a file of the fetching process and send it
//!   to a URL the tenant chose.
//! - [`local_address`]: loopback, link-local (cloud metadata) and
//!   unspecified addresses, refused for tenants' URLs and endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The largest module a worker accepts, compressed or not.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// What one fetch may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Read local paths and `file://` URLs.
    pub allow_files: bool,
    /// Connect to loopback, link-local and unspecified addresses (the
    /// fetching host itself, cloud metadata services).
    pub allow_local_addresses: bool,
    /// Longest storage may keep a request waiting: to connect, for the
    /// answer, and between two reads of the body.
    pub timeout: Duration,
    /// Retries of a request that failed for a transient reason.
    pub retries: usize,
    /// Largest module, as stored and decompressed.
    pub max_bytes: u64,
    /// Keep the body of storage's error answers (capped) in error messages.
    /// Off for tenants: the body is bytes of a server the tenant chose.
    pub quote_error_bodies: bool,
}

impl Policy {
    /// For the process's own modules (the worker's `--module`, the command
    /// line): files, any address, 256 MiB.
    pub const TRUSTED: Policy = Policy {
        allow_files: true,
        allow_local_addresses: true,
        timeout: Duration::from_secs(30),
        retries: 2,
        max_bytes: MAX_MODULE_BYTES,
        quote_error_bodies: true,
    };
}

impl Default for Policy {
    fn default() -> Self {
        Self::TRUSTED
    }
}

/// Settings a credentials Secret may hold: static credentials, region,
/// endpoint and plain HTTP, for each store. Everything else (token files,
/// credential URIs, STS or authority hosts, proxies, metadata endpoints,
/// timeouts) is refused.
pub const ALLOWED_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_ID",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TENANT_ID",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_ALLOW_HTTP",
];

/// Variables among [`ALLOWED_VARIABLES`] that name an endpoint to connect to.
pub const ENDPOINT_VARIABLES: &[&str] =
    &["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AZURE_STORAGE_ENDPOINT"];

/// Variables among [`ALLOWED_VARIABLES`] that hold a credential: without
/// one, requests are sent unsigned instead of asking a metadata service
/// for the fetching host's own identity.
pub const CREDENTIAL_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
];

/// A variable a credentials Secret may not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key {key} is not allowed in a credentials Secret: only static credentials, region, \
     endpoint and allow-http settings are ({allowed}); remove the key"
)]
pub struct ForbiddenVariable {
    /// The key, as in the Secret.
    pub key: String,
    allowed: String,
}

/// Refuses the first variable that is not in [`ALLOWED_VARIABLES`].
pub fn check_variables(variables: &BTreeMap<String, String>) -> Result<(), ForbiddenVariable> {
    match variables
        .keys()
        .find(|k| !ALLOWED_VARIABLES.contains(&k.as_str()))
    {
        Some(key) => Err(ForbiddenVariable {
            key: key.clone(),
            allowed: ALLOWED_VARIABLES.join(", "),
        }),
        None => Ok(()),
    }
}

/// The variables of `environment` that a credentials Secret may set, for
/// a process that must use no other store setting of its environment.
pub fn allowed_variables(
    environment: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    environment
        .into_iter()
        .filter(|(k, _)| ALLOWED_VARIABLES.contains(&k.as_str()))
        .collect()
}

/// Why `ip` may not be reached by a tenant's fetch, if it may not:
/// loopback, link-local (169.254.169.254 and fd00:ec2::254 are cloud
/// metadata services), or unspecified (which connects to the host itself).
pub fn local_address(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => {
            Some("an unspecified address")
        }
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("an unspecified address"),
        IpAddr::V6(v6) if v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => {
            Some("a cloud metadata address")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_and_credential_uris_are_refused() {
        for key in [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ENDPOINT_URL_STS",
            "AWS_METADATA_ENDPOINT",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_AUTHORITY_HOST",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "HTTPS_PROXY",
            "AWS_PROXY_URL",
        ] {
            let vars = BTreeMap::from([
                ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
                (key.to_string(), "x".to_string()),
            ]);
            let err = check_variables(&vars).unwrap_err();
            assert_eq!(err.key, key);
            assert!(
                err.to_string()
                    .starts_with(&format!("key {key} is not allowed"))
            );
        }
        let vars = BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
            (
                "AWS_ENDPOINT_URL".to_string(),
                "http://minio:9000".to_string(),
            ),
        ]);
        assert_eq!(check_variables(&vars), Ok(()));
    }

    #[test]
    fn local_addresses() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
        ] {
            assert!(local_address(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1"] {
            assert_eq!(local_address(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
