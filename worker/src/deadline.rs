//! The per-connection deadline for guest code.
//!
//! The design overview is in `docs/ARCHITECTURE.md`; this is the detail.
//!
//! One timer thread per process holds every armed deadline in order: a
//! thread of its own, not a tokio task, because guests run on runtime
//! threads too (`spare.rs`), and a task woken by a runtime thread that then
//! runs a spinning guest would wait behind it. When a deadline passes it interrupts that guest's store
//! through wasmer's host interrupt, and keeps interrupting it every few
//! milliseconds (an interrupt that lands just before the guest enters wasm
//! can be missed) until the connection drops its [`Watchdog`]. Arming and
//! disarming is an insert and a removal under a mutex: no task is spawned or
//! aborted per connection.
//!
//! # Where an interrupt may land
//!
//! wasmer's host interrupt is a `SIGUSR1` sent to the guest's thread. Its
//! handler (wasmer-vm 7.4.2, `trap/traphandlers.rs` and
//! `interrupt_registry/unix.rs`) unwinds whenever the interrupted store is
//! inside a call and the stack pointer is on the call's wasm stack. Host
//! code runs on that stack too: the host functions of the ABI, wasmer's
//! trampolines around them (which borrow the thread's store-context
//! `RefCell` and lock the interrupt registry's `DashMap`), and its libcalls
//! (`table.grow`, `memory.grow`, which allocate). Unwinding there skips
//! their destructors and leaves those borrows and locks held: the next call
//! on the thread panics ("already borrowed"), or the timer blocks forever on
//! the registry lock.
//!
//! So every store gets a trap handler ([`GuestCode::trap_handler`]), which
//! wasmer consults before unwinding: an interrupt that finds the thread
//! anywhere but in the module's own compiled functions is declared handled
//! and dropped, and the thread carries on. Compiled wasm holds no host lock
//! or borrow, so unwinding there is safe. A guest in a wasm loop is caught
//! by the next interrupt (every `RETRY`, 5 ms); a guest looping over host calls
//! is stopped by the host functions themselves, which check the deadline
//! and trap with `timeout` (see `guest.rs`); a dropped interrupt also leaves
//! the store marked, and wasmer raises `timeout` as that host call returns.
//! Outside a guest call (instantiation, drop) wasmer already ignores the
//! signal: the store is not running.
//!
//! What this costs: a guest that spends nearly all of its time inside
//! wasmer's libcalls (`memory.fill` of its whole memory in a loop, say) is
//! only stopped once an interrupt finds it in wasm between two of them, so
//! it can run well past its deadline: a loop of 64 MiB fills under a 300 ms
//! timeout ran for about 12 s.
//!
//! The timer records when it last ran, so `/healthz` can tell a timer that
//! no longer runs (and so no longer stops guests) from a busy one:
//! [`Deadlines::stuck`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmer::Interrupter;

use crate::sys;

const RETRY: Duration = Duration::from_millis(5);

type Key = (Instant, u64);

struct Armed {
    deadlines: Mutex<BTreeMap<Key, Interrupter>>,
    /// When the timer thread wakes next (`None`: only when notified); taken
    /// under the `deadlines` lock, and held by the timer while it waits.
    wakes_at: Mutex<Option<Instant>>,
    /// Wakes the timer for a deadline earlier than `wakes_at`.
    earlier: Condvar,
    /// Taken by the timer at each round; held by [`Deadlines::stall`].
    stalled: Mutex<()>,
    next_id: AtomicU64,
    timer: OnceLock<()>,
    /// When the timer task last ran, in nanoseconds since `epoch`.
    ran: AtomicU64,
    epoch: Instant,
}

impl Default for Armed {
    fn default() -> Self {
        Self {
            deadlines: Mutex::default(),
            wakes_at: Mutex::default(),
            earlier: Condvar::new(),
            stalled: Mutex::new(()),
            next_id: AtomicU64::new(0),
            timer: OnceLock::new(),
            ran: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Armed {
    fn mark_ran(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        self.ran
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last_ran(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.ran.load(Ordering::Relaxed))
    }
}

/// Every deadline of one function's guests, and the thread that enforces them.
#[derive(Default, Clone)]
pub struct Deadlines(Arc<Armed>);

/// Interrupts a guest at its deadline; disarmed when dropped.
pub struct Watchdog {
    armed: Arc<Armed>,
    key: Key,
}

impl Deadlines {
    /// Arms a watchdog; the first one starts the timer thread.
    pub fn arm(&self, deadline: Instant, interrupter: Interrupter) -> Watchdog {
        let armed = &self.0;
        armed.timer.get_or_init(|| {
            let timer = armed.clone();
            std::thread::Builder::new()
                .name("nur-deadlines".into())
                .spawn(move || enforce(&timer))
                .expect("starting the deadline timer thread");
        });
        let key = (deadline, armed.next_id.fetch_add(1, Ordering::Relaxed));
        let mut deadlines = armed.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        deadlines.insert(key, interrupter);
        // Wake the timer only if it would sleep past this deadline: with
        // deadlines a fixed time after accept, that is rarely the case.
        let mut wakes_at = armed.wakes_at.lock().unwrap_or_else(|e| e.into_inner());
        if wakes_at.is_none_or(|at| deadline < at) {
            *wakes_at = Some(deadline);
            armed.earlier.notify_one();
        }
        drop(wakes_at);
        drop(deadlines);
        Watchdog {
            armed: armed.clone(),
            key,
        }
    }

    /// How long the earliest armed deadline is overdue, when that is more
    /// than `grace` and the timer thread has not run for `grace` either: the
    /// timer is stuck and guests past their deadline are not stopped.
    pub fn stuck(&self, grace: Duration) -> Option<Duration> {
        let now = Instant::now();
        let earliest = {
            let deadlines = self.0.deadlines.lock().unwrap_or_else(|e| e.into_inner());
            deadlines.keys().next()?.0
        };
        let overdue = now.saturating_duration_since(earliest);
        let idle = now.saturating_duration_since(self.0.last_ran());
        (overdue > grace && idle > grace).then_some(overdue)
    }
}

impl Deadlines {
    /// Stops the timer thread at its next round until the guard is dropped:
    /// how a test shows what a stuck timer does (a timer stuck for real
    /// waits on a lock that an unwound guest left held).
    #[doc(hidden)]
    pub fn stall(&self) -> std::sync::MutexGuard<'_, ()> {
        self.0.stalled.lock().unwrap_or_else(|e| e.into_inner())
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
fn enforce(armed: &Armed) -> ! {
    loop {
        drop(armed.stalled.lock());
        let now = Instant::now();
        armed.mark_ran(now);
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
        // `wakes_at` is taken before the deadlines are let go and held
        // until the wait: a watchdog armed meanwhile sees it and notifies.
        let mut wakes_at = armed.wakes_at.lock().unwrap_or_else(|e| e.into_inner());
        *wakes_at = wake;
        drop(deadlines);
        // Woken, timed out or poisoned: each rescans the deadlines.
        match wake {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                drop(armed.earlier.wait_timeout(wakes_at, left));
            }
            None => drop(armed.earlier.wait(wakes_at)),
        }
    }
}

/// The address ranges of a module's compiled functions: the only places an
/// interrupt may unwind a guest (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct GuestCode(Arc<[Range<usize>]>);

impl GuestCode {
    /// The compiled functions of `module`, sorted by address.
    pub fn of(module: &wasmer::Module) -> Self {
        let mut ranges: Vec<Range<usize>> = module
            .sys_artifact()
            .and_then(|artifact| artifact.finished_function_extents())
            .unwrap_or_default()
            .into_iter()
            .map(|(_, extent)| {
                let start = extent.ptr.0 as usize;
                start..start + extent.length
            })
            .collect();
        ranges.sort_by_key(|range| range.start);
        Self(ranges.into())
    }

    /// Whether `pc` is inside a compiled function of the module.
    pub fn contains(&self, pc: usize) -> bool {
        let after = self.0.partition_point(|range| range.start <= pc);
        after > 0 && self.0[after - 1].contains(&pc)
    }

    /// The trap handler of a guest's store: declares an interrupt
    /// (`SIGUSR1`) handled, so that wasmer does not unwind, unless the
    /// thread was executing the module's compiled code. Every other signal
    /// is left to wasmer. Runs in the signal handler: it only reads this
    /// immutable list and the signal's context.
    pub fn trap_handler(
        &self,
    ) -> impl Fn(libc::c_int, *const libc::siginfo_t, *const libc::c_void) -> bool + Send + Sync + 'static
    {
        let code = self.clone();
        sys::interrupt_filter(move |pc| code.contains(pc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges_are_searched_by_address() {
        let code = GuestCode(vec![10..20, 30..31, 40..50].into());
        let inside = [10, 19, 30, 45];
        let outside = [0, 9, 20, 29, 31, 39, 50, usize::MAX];
        assert!(inside.iter().all(|pc| code.contains(*pc)));
        assert!(!outside.iter().any(|pc| code.contains(*pc)));
        assert!(!GuestCode::default().contains(10));
    }
}
