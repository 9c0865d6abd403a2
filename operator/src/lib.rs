//! `nur-operator`: the `NurFunction` CRD and its controller.
//!
//! Layout:
//! - [`crd`]: the `NurFunction` types; the CRD YAML (`nur-operator crd`,
//!   checked in as crds/nurfunction.yaml).
//! - [`meta`]: validation of a NurFunction into the builders' [`meta::Input`];
//!   names, labels, owner references shared by every owned object;
//!   [`spec_policy`]: the risky fields the operator's flags allow.
//! - one pure builder per owned object, no client: [`deployment`],
//!   [`service`], [`hpa`], [`pdb`], [`compile_job`]; each with
//!   whole-object tests.
//! - [`controller`]: the reconciler's wiring and stages; [`module_check`]
//!   (stage 1: the module, with the credentials Secret, cached and bounded),
//!   [`apply`] (stage 3: server-side apply), [`status`] (stage 4, pure) and
//!   [`reason`] (every condition reason); [`env_sources`] (stage 1: the
//!   Secrets and ConfigMaps of spec.env, labelled for functions).
//! - [`native_code`] (stage 1b: native code compiled once per digest by
//!   the Job of the pure [`compile_job`], pinned in the Deployment).
//! - [`idle`]: scale to zero (pure): asleep or awake from the gateway's
//!   activity marks, and what triggers a reconcile.
//! - [`routes`]: which function holds each gateway route (pure; the
//!   Routed condition here, the routing table in nur-gateway).
//! - [`leader`]: leader election on a Lease; [`health`]: /healthz, /readyz
//!   and /metrics of the operator itself.
#![forbid(unsafe_code)]

pub mod apply;
pub mod compile_job;
pub mod controller;
pub mod crd;
pub mod deployment;
pub mod env_sources;
pub mod health;
pub mod hpa;
pub mod idle;
pub mod leader;
pub mod meta;
pub mod module_check;
pub mod native_code;
pub mod pdb;
pub mod reason;
pub mod routes;
pub mod service;
pub mod spec_policy;
pub mod status;
