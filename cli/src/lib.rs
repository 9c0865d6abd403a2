//! `nur`, the command line of Nur: from a repository's `nurfile.yaml` to
//! running functions.
//!
//! Layout:
//! - [`nurfile`] (the file: the original platform's format plus Nur's
//!   keys), [`names`] (function names as Kubernetes names), [`template`]
//!   (default builds and skeletons);
//! - [`new`] (`nur new`), [`build`] (`nur build`);
//! - [`store`] (the content-addressed upload), [`manifest`] (the
//!   NurFunction applied, pure), [`cluster`] (the kubeconfig's cluster and
//!   its errors), [`deploy`] (upload, apply, wait Ready), [`progress`];
//! - [`status`] (`nur ls`, `nur status`, the failure report), [`logs`],
//!   [`call`] (through a port-forward), [`rm`];
//! - [`console`] (`nur console`: the web console on the same modules).

pub mod build;
pub mod call;
pub mod cluster;
pub mod console;
pub mod deploy;
pub mod logs;
pub mod manifest;
pub mod names;
pub mod new;
pub mod nurfile;
pub mod progress;
pub mod rm;
pub mod status;
pub mod store;
pub mod template;
