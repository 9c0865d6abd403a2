//! The per-connection deadline for guest code.
//!
//! A timer task on the tokio runtime interrupts the guest's store through
//! wasmer's host interrupt when the deadline passes, and keeps interrupting
//! every few milliseconds (an interrupt that lands just before the guest
//! enters wasm can be missed) until the connection drops the [`Watchdog`].

use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;
use wasmer::Interrupter;

const RETRY: Duration = Duration::from_millis(5);

/// Interrupts a guest at its deadline; disarmed when dropped.
pub struct Watchdog(AbortHandle);

impl Watchdog {
    /// Arms a watchdog on the current tokio runtime.
    pub fn arm(deadline: std::time::Instant, interrupter: Interrupter) -> Self {
        let task = tokio::runtime::Handle::current().spawn(async move {
            tokio::time::sleep_until(Instant::from_std(deadline)).await;
            loop {
                interrupter.interrupt();
                tokio::time::sleep(RETRY).await;
            }
        });
        Self(task.abort_handle())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}
