//! Command-line flags of `nur-worker`, each also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;

/// `nur-worker serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The module: a path or URL (file, s3, gs, az, http(s)) to a .wasm
    /// binary, .wat text, or either one zstd-compressed.
    #[arg(long, env = "NUR_MODULE")]
    pub module: String,

    /// Refuse to serve unless the module's sha256 (hex) is this.
    #[arg(long, env = "NUR_SHA256")]
    pub sha256: Option<String>,

    /// Read object-store settings only from the static credential variables
    /// of the environment (what a NurFunction's credentialsSecret may hold:
    /// keys, region, endpoint, allow-http), never token files, credential
    /// URIs or proxies; without a key, fetch unsigned. The operator sets it
    /// for functions with a credentials Secret.
    #[arg(long, env = "NUR_STATIC_CREDENTIALS")]
    pub static_credentials: bool,

    /// Load native code from this artifact (made by `nur-worker compile`) instead of compiling.
    #[arg(long, env = "NUR_ARTIFACT", requires = "artifact_sha256")]
    pub artifact: Option<String>,

    /// The artifact's sha256 (hex); required with --artifact, since loading one runs its code.
    #[arg(long, env = "NUR_ARTIFACT_SHA256")]
    pub artifact_sha256: Option<String>,

    /// Keep compiled modules here, keyed by module digest, wasmer version,
    /// compiler and CPU features; the next start loads instead of compiling.
    #[arg(long, env = "NUR_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,

    /// Name of the function in logs and metrics [default: the module's file name].
    #[arg(long, env = "NUR_FUNCTION_NAME")]
    pub function_name: Option<String>,

    /// A variable of the function's WASI environment, `NAME=VALUE`
    /// (repeatable). Each `NUR_ENV_NAME` variable of the worker's own
    /// environment is one too, as `NAME` (how the operator passes
    /// `spec.env`, Secret values included); nothing else of the worker's
    /// environment reaches the function.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_variable)]
    pub env: Vec<(String, String)>,

    /// Address the function is served on.
    #[arg(long, env = "NUR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "NUR_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// How long in-flight connections may take to finish after SIGTERM.
    #[arg(long, env = "NUR_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// After SIGTERM, how long to keep accepting while /readyz answers 503,
    /// so that load balancers take the worker out before its listener closes.
    #[arg(long, env = "NUR_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    #[command(flatten)]
    pub limits: Limits,
}

pub use nur_module::abi::FUNCTION_ENV_PREFIX;

impl ServeArgs {
    /// The function's WASI environment: `--env` flags, then every
    /// `NUR_ENV_*` variable of the process without its prefix, by name.
    pub fn function_environment(&self) -> Vec<(String, String)> {
        let mut from_process: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.to_str()?.strip_prefix(FUNCTION_ENV_PREFIX)?.to_owned();
                Some((name, value.into_string().ok()?))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect();
        from_process.sort();
        self.env.iter().cloned().chain(from_process).collect()
    }
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value))
            if !name.is_empty() && !name.contains('\0') && !value.contains('\0') =>
        {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not NAME=VALUE (a non-empty name, an = and the value, no NUL)"
        )),
    }
}

/// Default of `--max-open-connections` (in practice RLIMIT_NOFILE decides).
pub const DEFAULT_MAX_OPEN_CONNECTIONS: u32 = 100_000;

/// What one connection may use.
#[derive(clap::Args, Debug, Clone)]
pub struct Limits {
    /// Longest a connection may last, guest time included; a guest still running then is interrupted.
    #[arg(long, env = "NUR_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Longest the worker waits for a client to send or to take output.
    #[arg(long, env = "NUR_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Connections served at once, each with a live instance and a thread;
    /// more are accepted and wait, without a thread, for a slot. Clamped at
    /// start to what vm.max_map_count allows (12 mappings each, plus one per
    /// table of the module).
    #[arg(long, env = "NUR_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Connections held open at once: served, waiting for their first bytes,
    /// or waiting for a slot; more wait in the listen backlog. Clamped at
    /// start to RLIMIT_NOFILE (whose soft limit is raised to the hard limit) minus 64.
    #[arg(long, env = "NUR_MAX_OPEN_CONNECTIONS", default_value_t = DEFAULT_MAX_OPEN_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_open_connections: u32,

    /// Linear memory per instance; memory.grow past it returns -1.
    #[arg(long, env = "NUR_MEMORY_LIMIT", default_value = "128Mi", value_parser = parse_size)]
    pub memory_limit: u64,

    /// Largest chunk handed to one poll_stream call (at most 16Mi).
    #[arg(long, env = "NUR_MAX_CHUNK", default_value = "64Ki", value_parser = parse_chunk_size)]
    pub max_chunk: u64,

    /// Most output one guest call may send; more is a trap.
    #[arg(long, env = "NUR_MAX_OUTPUT", default_value = "16Mi", value_parser = parse_size)]
    pub max_output: u64,

    /// Most bytes of nur_log lines one connection may write to the log; its
    /// later lines are dropped and counted (nur_guest_log_lines_dropped_total).
    #[arg(long, env = "NUR_MAX_LOG_BYTES", default_value = "64Ki", value_parser = parse_size)]
    pub max_log_bytes: u64,

    /// HTTP/1.1 keep-alive: after a whole, length-delimited answer to a
    /// request that allows another, the connection waits (without a thread,
    /// up to --idle-timeout) for its next request, served in a fresh
    /// instance. Off: every connection closes after its answer.
    #[arg(long, env = "NUR_KEEP_ALIVE")]
    pub keep_alive: bool,
}

impl Default for Limits {
    /// The defaults above (and the `NUR_*` environment, as on the command line).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            limits: Limits,
        }
        <Only as clap::Parser>::parse_from(["nur-worker"]).limits
    }
}

/// Parses `30s`, `500ms`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if duration.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(duration)
}

/// Parses `128Mi`, `64KiB`, `1000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = text
        .parse::<ByteSize>()
        .map_err(|e| format!("{text:?}: {e}"))?
        .as_u64();
    if bytes == 0 {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(bytes)
}

/// Largest `--max-chunk`: every connection in a guest call holds a buffer this big.
pub const MAX_CHUNK_LIMIT: u64 = 16 << 20;

fn parse_chunk_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes > MAX_CHUNK_LIMIT {
        return Err(format!("{text:?}: at most {MAX_CHUNK_LIMIT} bytes (16Mi)"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("128Mi"), Ok(128 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_chunk_size("1Gi").unwrap_err().contains("at most"));
    }

    #[test]
    fn variables_are_name_equals_value() {
        assert_eq!(
            parse_variable("A=b=c"),
            Ok(("A".to_string(), "b=c".to_string()))
        );
        assert_eq!(
            parse_variable("EMPTY="),
            Ok(("EMPTY".into(), String::new()))
        );
        for bad in ["noequals", "=value"] {
            let error = parse_variable(bad).unwrap_err();
            assert!(error.contains("is not NAME=VALUE"), "{error}");
        }
    }
}
