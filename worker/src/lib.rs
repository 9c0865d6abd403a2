//! `nur-worker`: serves one Nur WebAssembly function over TCP.
//!
//! The design (threads, capacity, the memory pool, deadlines, `unsafe`
//! code) is described once, in `docs/ARCHITECTURE.md`; each module's own
//! documentation covers the detail of its part.
//!
//! Layout:
//! - `main.rs`: the command line (`serve`, `check`, `compile`), logging,
//!   start and drain;
//!   everything else is this library, so benchmarks can reach it.
//! - [`config`]: flags and their environment variables.
//! - [`guest`]: the module compiled once, and one instance per connection;
//!   `host.rs` (private): the ABI's host functions; [`wasi`]: the subset
//!   of WASI preview 1 a module may import too; [`fault`]: how a guest
//!   fails; [`tunables`] caps its memory,
//!   [`image`] lifts its data into a memory image,
//!   [`pool`] reuses memories (mapping the image into each) and
//!   [`deadline`] interrupts it at the connection's deadline.
//! - [`startup`]: [`startup::prepare`]: fetch with retries, digest pin, the
//!   limits clamped to the module ([`capacity`]), the function's name,
//!   native code from an [`artifact`] (AOT or the cache) or compiled.
//! - [`server`]: the accept loop and drain; [`connection`]: one connection's
//!   requests, on a blocking-pool thread or on a runtime thread [`spare`]
//!   lends (`socket.rs`: its reads and writes, bounded by the idle timeout
//!   and the deadline); [`capacity`]: how many connections the process's
//!   limits allow.
//! - [`admin`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`check`]: the summary printed by `nur-worker check`; [`compile`]:
//!   `nur-worker compile`, an artifact to a file or to object storage.
//! - `sys`: the system calls (`mmap`, `mprotect`, `madvise`, `memfd_create`,
//!   `process_madvise`, `pidfd_open`, `poll`, `read`) behind safe wrappers;
//!   the crate denies `unsafe` code anywhere else but where wasmer's traits
//!   and APIs require it (the [`pool`] memory and the [`tunables`], loading
//!   an [`artifact`], a [`guest`] parked between two calls moving threads).

#![deny(unsafe_code)]

pub mod admin;
pub mod artifact;
pub mod capacity;
pub mod check;
pub mod compile;
pub mod config;
pub mod connection;
pub mod deadline;
pub mod fault;
pub mod guest;
mod host;
pub mod image;
pub mod metrics;
pub mod pool;
pub mod server;
mod socket;
pub mod spare;
pub mod startup;
mod sys;
pub mod tunables;
pub mod wasi;
