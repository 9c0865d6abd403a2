//! `nur-operator`: the `NurFunction` CRD and its controller.
//!
//! Layout:
//! - [`crd`]: the `NurFunction` types; the CRD YAML (`nur-operator crd`,
//!   checked in as crds/nurfunction.yaml).
//! - [`meta`]: validation of a NurFunction into the builders' [`meta::Input`];
//!   names, labels, owner references shared by every owned object.
//! - one pure builder per owned object, no client: [`deployment`],
//!   [`service`], [`hpa`], [`pdb`]; each with whole-object tests.
//! - [`controller`]: the reconciler in named stages (fetch and validate the
//!   module, build, server-side apply, status) and `nur-operator run`.
//! - [`leader`]: leader election on a Lease; [`health`]: /healthz, /readyz
//!   and /metrics of the operator itself.
#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
pub mod deployment;
pub mod health;
pub mod hpa;
pub mod leader;
pub mod meta;
pub mod pdb;
pub mod service;
