//! The reasons of the conditions the operator writes, as one enum, so a
//! reason is never a misspelt string.

use std::fmt;

/// A condition reason (PascalCase, as Kubernetes spells them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum Reason {
    /// The module was fetched and follows the ABI.
    Checked,
    /// Every desired pod serves the current module.
    Ready,
    /// Pods are being rolled or started.
    Progressing,
    /// The Deployment reports no availability yet.
    Pending,
    /// The spec cannot be built into objects.
    InvalidSpec,
    /// The spec asks for something this operator does not allow.
    SpecNotAllowed,
    /// An owned object was refused by the API server.
    ApplyFailed,
    ModuleNotFound,
    AccessDenied,
    ModuleTooLarge,
    /// A file, or an address the operator may not reach.
    URLNotAllowed,
    UnsupportedURL,
    BreaksABI,
    InvalidModule,
    DigestMismatch,
    CredentialsSecretNotFound,
    /// The credentials Secret holds a key other than static settings.
    CredentialsKeyNotAllowed,
    /// The credentials Secret could not be read from the API server.
    CredentialsUnreadable,
    StorageUnreachable,
    /// Idle: no pods until the gateway wakes it.
    ScaledToZero,
    /// Every route of the function is held by it.
    Routed,
    /// A route is held by an older function.
    RouteConflict,
    /// A TCP route outside the gateway's ports.
    PortOutOfRange,
    /// The module's native code is being compiled once for every pod.
    Compiling,
    /// Its native code was compiled and stored beside the module.
    Compiled,
    /// Compiling it once failed: the pods compile it themselves.
    CompileFailed,
    /// A Secret or ConfigMap named by spec.env does not exist.
    EnvSourceNotFound,
    /// A Secret or ConfigMap named by spec.env lacks nur.dev/function-env=true.
    EnvSourceNotAllowed,
}

impl Reason {
    /// The reason as written in a condition or an Event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checked => "Checked",
            Self::Ready => "Ready",
            Self::Progressing => "Progressing",
            Self::Pending => "Pending",
            Self::InvalidSpec => "InvalidSpec",
            Self::SpecNotAllowed => "SpecNotAllowed",
            Self::ApplyFailed => "ApplyFailed",
            Self::ModuleNotFound => "ModuleNotFound",
            Self::AccessDenied => "AccessDenied",
            Self::ModuleTooLarge => "ModuleTooLarge",
            Self::URLNotAllowed => "URLNotAllowed",
            Self::UnsupportedURL => "UnsupportedURL",
            Self::BreaksABI => "BreaksABI",
            Self::InvalidModule => "InvalidModule",
            Self::DigestMismatch => "DigestMismatch",
            Self::CredentialsSecretNotFound => "CredentialsSecretNotFound",
            Self::CredentialsKeyNotAllowed => "CredentialsKeyNotAllowed",
            Self::CredentialsUnreadable => "CredentialsUnreadable",
            Self::StorageUnreachable => "StorageUnreachable",
            Self::ScaledToZero => "ScaledToZero",
            Self::Routed => "Routed",
            Self::RouteConflict => "RouteConflict",
            Self::PortOutOfRange => "PortOutOfRange",
            Self::Compiling => "Compiling",
            Self::Compiled => "Compiled",
            Self::CompileFailed => "CompileFailed",
            Self::EnvSourceNotFound => "EnvSourceNotFound",
            Self::EnvSourceNotAllowed => "EnvSourceNotAllowed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
