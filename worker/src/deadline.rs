//! The per-connection deadline for guest code.
//!
//! One timer task per process (on the tokio runtime) holds every armed
//! deadline in order. When a deadline passes it interrupts that guest's store
//! through wasmer's host interrupt, and keeps interrupting it every few
//! milliseconds (an interrupt that lands just before the guest enters wasm
//! can be missed) until the connection drops its [`Watchdog`]. Arming and
//! disarming is an insert and a removal under a mutex: no task is spawned or
//! aborted per connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmer::Interrupter;

const RETRY: Duration = Duration::from_millis(5);

type Key = (Instant, u64);

#[derive(Default)]
struct Armed {
    deadlines: Mutex<BTreeMap<Key, Interrupter>>,
    /// When the timer task wakes next (`None`: only when notified); read and
    /// written under the `deadlines` lock.
    wakes_at: Mutex<Option<Instant>>,
    earlier: Notify,
    next_id: AtomicU64,
    timer: OnceLock<()>,
}

/// Every deadline of one function's guests, and the task that enforces them.
#[derive(Default, Clone)]
pub struct Deadlines(Arc<Armed>);

/// Interrupts a guest at its deadline; disarmed when dropped.
pub struct Watchdog {
    armed: Arc<Armed>,
    key: Key,
}

impl Deadlines {
    /// Arms a watchdog; the first one starts the timer task on the current
    /// tokio runtime.
    pub fn arm(&self, deadline: Instant, interrupter: Interrupter) -> Watchdog {
        let armed = &self.0;
        armed.timer.get_or_init(|| {
            tokio::runtime::Handle::current().spawn(enforce(armed.clone()));
        });
        let key = (deadline, armed.next_id.fetch_add(1, Ordering::Relaxed));
        let mut deadlines = armed.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        deadlines.insert(key, interrupter);
        // Wake the timer only if it would sleep past this deadline: with
        // deadlines a fixed time after accept, that is rarely the case.
        let mut wakes_at = armed.wakes_at.lock().unwrap_or_else(|e| e.into_inner());
        let sooner = wakes_at.is_none_or(|at| deadline < at);
        if sooner {
            *wakes_at = Some(deadline);
        }
        drop(wakes_at);
        drop(deadlines);
        if sooner {
            armed.earlier.notify_one();
        }
        Watchdog {
            armed: armed.clone(),
            key,
        }
    }

    /// Deadlines armed now.
    pub fn armed(&self) -> usize {
        self.0.deadlines.lock().map_or(0, |d| d.len())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let mut deadlines = self
            .armed
            .deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        deadlines.remove(&self.key);
    }
}

/// Interrupts every guest past its deadline, again every [`RETRY`], until
/// each is disarmed; sleeps until the earliest deadline otherwise.
async fn enforce(armed: Arc<Armed>) {
    loop {
        let now = Instant::now();
        let wake = {
            let deadlines = armed.deadlines.lock().unwrap_or_else(|e| e.into_inner());
            let mut late = false;
            for interrupter in deadlines.range(..(now, u64::MAX)).map(|(_, i)| i) {
                interrupter.interrupt();
                late = true;
            }
            let next = deadlines
                .range((now, u64::MAX)..)
                .next()
                .map(|((at, _), _)| *at);
            let wake = match (late, next) {
                (true, Some(next)) => Some(next.min(now + RETRY)),
                (true, None) => Some(now + RETRY),
                (false, next) => next,
            };
            *armed.wakes_at.lock().unwrap_or_else(|e| e.into_inner()) = wake;
            wake
        };
        let earlier = armed.earlier.notified();
        match wake {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                () = earlier => {}
            },
            None => earlier.await,
        }
    }
}
