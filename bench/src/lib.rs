//! `nur-bench`: tools that hold the Nur worker against a native baseline.
//!
//! Binaries (see bench/README.md for how `run.sh` uses them):
//! - `nur-load`: one-connection-per-request TCP load generator with latency
//!   percentiles (hdrhistogram);
//! - `nur-native`: the example functions compiled natively behind a minimal
//!   tokio accept loop, the baseline;
//! - `nur-idle`: holds many idle connections open and reports a server's RSS.
//!
//! Bench `instance` (criterion): the per-connection cost of a wasm instance.
//! This file: the few helpers the binaries share.

use std::time::Duration;

/// Parses a duration given as seconds (`10`, `0.5`) or with a unit (`500ms`, `2s`, `1m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let secs: f64 = number
        .parse()
        .map_err(|e| format!("{text:?}: not a duration: {e}"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?}: not a duration"));
    }
    Ok(Duration::from_secs_f64(secs * scale))
}

/// Raises this process's soft RLIMIT_NOFILE to at least `want` (up to the
/// hard limit); returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur >= want {
            return Ok(limit.rlim_cur);
        }
        limit.rlim_cur = want.min(limit.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// `VmRSS` of process `pid`, in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// Number of threads of process `pid`, from /proc/PID/status.
pub fn threads(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no Threads in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn own_rss() {
        let rss = rss_kib(std::process::id()).unwrap();
        assert!(rss > 0);
        assert!(threads(std::process::id()).unwrap() >= 1);
    }
}
