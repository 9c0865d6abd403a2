//! `nur`, the command line of Nur: from a repository's `nurfile.yaml` to
//! checked, compressed modules.
//!
//! Layout: `nurfile` (the file: the original platform's format plus Nur's
//! keys), `names` (function names as Kubernetes names), `template` (default
//! builds and skeletons), `build` (`nur build`), `new` (`nur new`).
//! `deploy`, `ls`, `status`, `logs`, `call` and `rm` come next.

pub mod build;
pub mod names;
pub mod new;
pub mod nurfile;
pub mod template;
