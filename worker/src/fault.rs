//! How a guest fails: the fault kinds of the metrics and logs, and the
//! mapping of wasmer's traps and the host functions' own errors to them.

use std::fmt;

use wasmer::RuntimeError;

use crate::connection::Close;
use wasmer_types::TrapCode;

/// How a guest failed; each ends its connection and only its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `unreachable` was executed.
    Unreachable,
    /// A load or store outside linear memory.
    OutOfBounds,
    /// A pointer passed to `nur_send` or `nur_log` outside linear memory.
    BadPointer,
    /// Division by zero, integer overflow or a bad float conversion.
    Arithmetic,
    /// The call stack overflowed.
    StackOverflow,
    /// Interrupted at the connection's deadline.
    Timeout,
    /// One call sent more than the output limit.
    OutputLimit,
    /// `alloc` returned an address where the chunk does not fit.
    BadAlloc,
    /// Instantiation failed (memory limit, start function trap).
    Instantiate,
    /// Any other trap.
    Other,
}

impl FaultKind {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::OutOfBounds => "out_of_bounds",
            Self::BadPointer => "bad_pointer",
            Self::Arithmetic => "arithmetic",
            Self::StackOverflow => "stack_overflow",
            Self::Timeout => "timeout",
            Self::OutputLimit => "output_limit",
            Self::BadAlloc => "bad_alloc",
            Self::Instantiate => "instantiate",
            Self::Other => "other",
        }
    }
}

/// A guest fault: what kind, and what happened.
#[derive(Debug)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.as_str())
    }
}

/// Errors raised by the host functions, turned into traps.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostFault {
    #[error("{function}({ptr}, {len}): the range is outside the guest's memory")]
    BadPointer {
        function: &'static str,
        ptr: u32,
        len: u32,
    },
    #[error("{function}: output of one call would exceed {limit} bytes")]
    OutputLimit {
        function: &'static str,
        limit: usize,
    },
    #[error("{function}: called past the connection's deadline")]
    Timeout { function: &'static str },
    /// WASI `proc_exit`: not a fault where a call can end (the connection
    /// ends as after `nur_end`), one in instantiation.
    #[error("proc_exit({code})")]
    Exit { code: i32 },
    /// A command's stdin or stdout found the connection closed, idle or at
    /// its deadline: the command ends with the connection, not a fault.
    #[error("the connection closed ({})", close.reason())]
    Closed { close: Close },
}

impl From<HostFault> for Fault {
    fn from(host: HostFault) -> Self {
        let kind = match host {
            HostFault::BadPointer { .. } => FaultKind::BadPointer,
            HostFault::OutputLimit { .. } => FaultKind::OutputLimit,
            HostFault::Timeout { .. } => FaultKind::Timeout,
            HostFault::Exit { .. } => FaultKind::Instantiate,
            HostFault::Closed {
                close: Close::Timeout,
            } => FaultKind::Timeout,
            HostFault::Closed { .. } => FaultKind::Other,
        };
        Fault {
            kind,
            message: host.to_string(),
        }
    }
}

impl From<RuntimeError> for Fault {
    fn from(error: RuntimeError) -> Self {
        let error = match error.downcast::<HostFault>() {
            Ok(host) => return host.into(),
            Err(error) => error,
        };
        let message = error.message();
        let kind = match error.to_trap() {
            Some(TrapCode::UnreachableCodeReached) => FaultKind::Unreachable,
            Some(TrapCode::HeapAccessOutOfBounds | TrapCode::TableAccessOutOfBounds) => {
                FaultKind::OutOfBounds
            }
            Some(
                TrapCode::IntegerOverflow
                | TrapCode::IntegerDivisionByZero
                | TrapCode::BadConversionToInteger,
            ) => FaultKind::Arithmetic,
            Some(TrapCode::StackOverflow) => FaultKind::StackOverflow,
            Some(TrapCode::HostInterrupt) => FaultKind::Timeout,
            _ => FaultKind::Other,
        };
        Fault { kind, message }
    }
}
