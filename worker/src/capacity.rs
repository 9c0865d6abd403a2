//! How many connections this process can hold, from its limits: open file
//! descriptors (`RLIMIT_NOFILE`, raised to its hard limit at start) bound the
//! open connections, and memory mappings (`vm.max_map_count`) bound the live
//! instances, each of which needs [`maps_per_active`] of them: its thread's
//! ([`MAPS_PER_THREAD`]: its stack and signal stack, wasmer's call stack,
//! each with a guard, and a margin), two for its linear memory (a pooled
//! reservation, split in two by its protection) and one for each of its
//! tables (a large table is a mapping of its own). Past `vm.max_map_count`
//! mmap fails with ENOMEM and wasmer and std abort; the worker stays below it
//! instead.
//!
//! The design overview is in `docs/ARCHITECTURE.md`.

use crate::config::{DEFAULT_MAX_OPEN_CONNECTIONS, Limits};

/// Descriptors kept for everything but connections (listeners, admin
/// connections, the module, logs).
pub const RESERVED_FDS: u64 = 64;

/// Memory mappings the thread of one live instance takes, with margin.
pub const MAPS_PER_THREAD: u64 = 10;

/// Memory mappings one live instance of a module with `memories` memories
/// and `tables` tables takes, its thread's included.
pub fn maps_per_active(memories: u64, tables: u64) -> u64 {
    MAPS_PER_THREAD + 2 * memories + tables
}

/// Mappings kept for everything but instances (the runtime, code, heap).
pub const RESERVED_MAPS: u64 = 4096;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}

/// `vm.max_map_count`, if readable.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Open connections: `requested`, at most what `nofile` descriptors allow.
pub fn open_connections(requested: u32, nofile: u64) -> u32 {
    let fds = nofile.saturating_sub(RESERVED_FDS).max(1);
    u64::from(requested).min(fds) as u32
}

/// Live instances: `requested`, at most what `max_map_count` mappings allow
/// at `per_active` each, and never more than the open connections.
pub fn active_connections(
    requested: u32,
    max_map_count: Option<u64>,
    open: u32,
    per_active: u64,
) -> u32 {
    let maps = max_map_count.map_or(u64::MAX, |count| {
        (count.saturating_sub(RESERVED_MAPS) / per_active.max(1)).max(1)
    });
    u64::from(requested).min(maps).min(u64::from(open)) as u32
}

/// Raises `RLIMIT_NOFILE` ([`raise_nofile`]) and lowers
/// `--max-open-connections` to what it allows ([`open_connections`]),
/// warning when a value given on the command line is lowered.
pub fn clamp_open(limits: &mut Limits) {
    let nofile = raise_nofile();
    let open = open_connections(limits.max_open_connections, nofile);
    if open < limits.max_open_connections
        && limits.max_open_connections != DEFAULT_MAX_OPEN_CONNECTIONS
    {
        tracing::warn!(
            requested = limits.max_open_connections,
            open,
            nofile,
            "--max-open-connections lowered to what RLIMIT_NOFILE allows"
        );
    }
    limits.max_open_connections = open;
}

/// Lowers `--max-connections` to what `vm.max_map_count` allows for live
/// instances of `module` (one memory, its tables) and to `--max-open-connections`.
pub fn clamp_active(limits: &mut Limits, module: &nur_module::Module) {
    let maps = max_map_count();
    let per_active = maps_per_active(1, module.summary.tables.len() as u64);
    let active = active_connections(
        limits.max_connections,
        maps,
        limits.max_open_connections,
        per_active,
    );
    if active < limits.max_connections {
        tracing::warn!(
            requested = limits.max_connections,
            active,
            max_map_count = maps,
            maps_per_connection = per_active,
            "--max-connections lowered to what vm.max_map_count and --max-open-connections allow"
        );
    }
    limits.max_connections = active;
}

/// Warns when the instances at once, each up to `--memory-limit`, can use
/// more memory than this process's cgroup allows: the kernel would OOM-kill
/// the worker, and every connection with it.
pub fn warn_if_above_cgroup(limits: &Limits) {
    let Some(cgroup) = cgroup_memory_limit() else {
        return;
    };
    let instances = u64::from(limits.max_connections).saturating_mul(limits.memory_limit);
    if instances > cgroup {
        tracing::warn!(
            max_connections = limits.max_connections,
            memory_limit = limits.memory_limit,
            cgroup_memory_limit = cgroup,
            "--max-connections x --memory-limit ({instances} bytes) is above the cgroup's memory \
             limit ({cgroup} bytes): guests together can get the worker OOM-killed; lower either \
             flag or raise the limit"
        );
    }
}

/// The memory limit of this process's cgroup, the smallest of its own and
/// its ancestors' (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes` under
/// `/sys/fs/cgroup/memory`); `None` when none is set ("max", missing, or
/// v1's "unlimited" figure).
pub fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_in(std::path::Path::new("/sys/fs/cgroup"), &cgroups)
}

/// [`cgroup_memory_limit`] for the `/proc/self/cgroup` text `cgroups`, with
/// the hierarchies mounted under `root`.
fn cgroup_limit_in(root: &std::path::Path, cgroups: &str) -> Option<u64> {
    cgroups
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let path = path.trim_start_matches('/');
            if controllers.is_empty() {
                Some(smallest_limit(&root.join(path), root, "memory.max"))
            } else if controllers.split(',').any(|c| c == "memory") {
                let memory = root.join("memory");
                Some(smallest_limit(
                    &memory.join(path),
                    &memory,
                    "memory.limit_in_bytes",
                ))
            } else {
                None
            }
        })
        .flatten()
        .min()
}

/// The smallest limit in `file` of `dir` and its ancestors up to `top`.
fn smallest_limit(dir: &std::path::Path, top: &std::path::Path, file: &str) -> Option<u64> {
    dir.ancestors()
        .take_while(|d| d.starts_with(top))
        .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .filter(|&bytes| bytes < UNLIMITED)
        .min()
}

/// cgroup v1 reports no limit as a figure near `i64::MAX` (rounded to pages).
const UNLIMITED: u64 = 1 << 62;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_clamp_the_requested_figures() {
        assert_eq!(open_connections(100_000, 20_000), 19_936);
        assert_eq!(open_connections(100, 20_000), 100);
        assert_eq!(open_connections(100, 10), 1);
        let one_memory = maps_per_active(1, 0);
        assert_eq!(one_memory, 12);
        assert_eq!(
            active_connections(1024, Some(65_530), 19_936, one_memory),
            1024
        );
        assert_eq!(
            active_connections(10_000, Some(65_530), 19_936, one_memory),
            5_119
        );
        assert_eq!(active_connections(10_000, None, 500, one_memory), 500);
        assert_eq!(active_connections(10, Some(0), 500, one_memory), 1);
        let tables = maps_per_active(1, 4);
        assert_eq!(
            active_connections(10_000, Some(65_530), 19_936, tables),
            3_839
        );
    }

    #[test]
    fn the_smallest_cgroup_memory_limit_of_the_hierarchy_counts() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "memory/pod/worker/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write("memory/pod/memory.limit_in_bytes", "1073741824\n");
        write("memory/memory.limit_in_bytes", "9223372036854771712\n");
        let v1 = "4:memory:/pod/worker\n3:cpu:/\n0::/\n";
        assert_eq!(cgroup_limit_in(root.path(), v1), Some(1 << 30));
        write("v2/memory.max", "max\n");
        write("v2/slice/memory.max", "536870912\n");
        write("v2/slice/pod/memory.max", "max\n");
        let v2 = "0::/slice/pod\n";
        assert_eq!(cgroup_limit_in(&root.path().join("v2"), v2), Some(1 << 29));
        assert_eq!(cgroup_limit_in(root.path(), "0::/elsewhere\n"), None);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard / 2, hard).unwrap();
        let soft = raise_nofile();
        let (now, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!((soft, now), (hard, hard));
    }
}
