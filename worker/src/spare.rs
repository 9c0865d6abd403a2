//! Runtime threads lent to guests.
//!
//! Handing a connection to tokio's blocking pool costs a futex wake and
//! two context switches, as much as the guest's own work for a small
//! function. So while fewer than all but one of the runtime's threads are
//! running a guest, a connection's next step runs on the runtime thread
//! that has it ([`SpareThreads::lend`]); the others go to the pool. One
//! runtime thread is never lent: a guest that spins until its deadline, or
//! a client that does not read its answer, holds at most the lent threads,
//! and accepting, the admin endpoints and every waiting connection go on,
//! on the rest.
//!
//! That the rest go on needs one more thing. Tokio polls its I/O and timer
//! driver only from a runtime thread that parks: the thread that was
//! parked in the driver wakes for the connection's bytes, and if it then
//! runs a long guest, the others sleep on a condition variable and nothing
//! polls the driver until the guest ends. A watcher thread ([`watch`])
//! looks every [`TICK`] while a thread is lent; when no lent step ended
//! within a tick it spawns an empty task from outside the runtime, which
//! wakes a sleeping runtime thread, and that thread, parking again, takes
//! the driver. Short guests (the usual case) cost nothing more;
//! `tokio::task::block_in_place`, the runtime's own answer, would move the
//! thread's scheduler to another thread on every step, which is the
//! hand-off this module avoids.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use tokio::runtime::Handle;

/// How often the watcher looks while a runtime thread is lent: the
/// longest a lent guest keeps the runtime's I/O waiting is two of these.
pub const TICK: Duration = Duration::from_millis(1);

/// Ticks without a lend after which the watcher sleeps until the next.
const IDLE_TICKS: u32 = 100;

/// How many runtime threads may run a guest at once, and how many do.
pub struct SpareThreads {
    shared: Arc<Shared>,
    watcher: Option<Thread>,
}

struct Shared {
    lent: AtomicUsize,
    most: usize,
    /// Lent steps that ended so far: unchanged for a tick while a thread
    /// is lent means that thread has been in one guest all the tick.
    ended: AtomicU64,
    /// The watcher sleeps until a lend wakes it.
    asleep: AtomicBool,
    /// The [`SpareThreads`] are gone: the watcher ends.
    closed: AtomicBool,
}

/// A runtime thread lent to a guest until this is dropped.
pub struct Lent<'a>(&'a Shared);

impl SpareThreads {
    /// For `runtime`, of `workers` threads: all but one may be lent. A
    /// runtime of one thread lends none and needs no watcher.
    pub fn new(workers: usize, runtime: Handle) -> Self {
        Self::with_wake(workers, move || drop(runtime.spawn(async {})))
    }

    /// [`SpareThreads::new`] with what the watcher does to wake a runtime
    /// thread.
    fn with_wake(workers: usize, wake: impl Fn() + Send + 'static) -> Self {
        let most = workers.saturating_sub(1);
        if most == 0 {
            return Self::never_lends();
        }
        let shared = Arc::new(Shared::new(most));
        let watching = shared.clone();
        let watcher = std::thread::Builder::new()
            .name("nur-lent-watch".into())
            .spawn(move || watch(&watching, wake));
        match watcher {
            Ok(watcher) => Self {
                shared,
                watcher: Some(watcher.thread().clone()),
            },
            Err(error) => {
                // Without the watcher, lending could stall the runtime's I/O.
                tracing::warn!(%error, "no watcher thread: guests run on the blocking pool only");
                Self::never_lends()
            }
        }
    }

    fn never_lends() -> Self {
        Self {
            shared: Arc::new(Shared::new(0)),
            watcher: None,
        }
    }

    /// This thread, when another is left unlent.
    pub fn lend(&self) -> Option<Lent<'_>> {
        let shared = &*self.shared;
        if shared.lent.fetch_add(1, Ordering::SeqCst) >= shared.most {
            shared.lent.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        if shared.asleep.swap(false, Ordering::SeqCst)
            && let Some(watcher) = &self.watcher
        {
            watcher.unpark();
        }
        Some(Lent(shared))
    }
}

impl Drop for SpareThreads {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(watcher) = &self.watcher {
            watcher.unpark();
        }
    }
}

impl Shared {
    fn new(most: usize) -> Self {
        Self {
            lent: AtomicUsize::new(0),
            most,
            ended: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::SeqCst);
        self.0.lent.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The watcher: wakes a runtime thread when a lent step has lasted a
/// whole tick, once per such stretch; sleeps after [`IDLE_TICKS`] without
/// a lend; ends when the [`SpareThreads`] are dropped.
fn watch(state: &Shared, wake: impl Fn()) {
    let mut idle = 0;
    // The count of ended steps at the last tick, and whether a runtime
    // thread was already woken for it.
    let mut last: Option<(u64, bool)> = None;
    while !state.closed.load(Ordering::SeqCst) {
        if state.lent.load(Ordering::SeqCst) == 0 {
            last = None;
            idle += 1;
            if idle >= IDLE_TICKS {
                idle = 0;
                state.asleep.store(true, Ordering::SeqCst);
                // A lend after the store sees `asleep` and unparks; one
                // before it is seen here.
                if state.lent.load(Ordering::SeqCst) == 0 {
                    std::thread::park();
                    continue;
                }
                state.asleep.store(false, Ordering::SeqCst);
            }
        } else {
            idle = 0;
            let ended = state.ended.load(Ordering::SeqCst);
            last = match last {
                Some((seen, false)) if seen == ended => {
                    wake();
                    Some((ended, true))
                }
                Some((seen, woken)) if seen == ended => Some((ended, woken)),
                _ => Some((ended, false)),
            };
        }
        std::thread::sleep(TICK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn all_threads_but_one_are_lent() {
        let spare = SpareThreads::new(3, Handle::current());
        let first = spare.lend().expect("first");
        let second = spare.lend().expect("second");
        assert!(spare.lend().is_none(), "the third thread is kept");
        drop(first);
        assert!(spare.lend().is_some(), "a thread given back is lent again");
        drop(second);
        assert!(
            SpareThreads::new(1, Handle::current()).lend().is_none(),
            "a single thread is never lent"
        );
    }

    fn counting() -> (SpareThreads, Arc<AtomicU64>) {
        let wakes = Arc::new(AtomicU64::new(0));
        let counted = wakes.clone();
        let spare = SpareThreads::with_wake(2, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (spare, wakes)
    }

    #[test]
    fn a_lend_held_past_two_ticks_wakes_a_runtime_thread_once() {
        let (spare, wakes) = counting();
        let lent = spare.lend().unwrap();
        std::thread::sleep(TICK * 50);
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "one wake per held lend");
        drop(lent);
        let lent = spare.lend().unwrap();
        std::thread::sleep(TICK * 50);
        drop(lent);
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "and one for the next");
    }

    #[test]
    fn short_lends_wake_nothing() {
        let (spare, wakes) = counting();
        let until = std::time::Instant::now() + TICK * 50;
        while std::time::Instant::now() < until {
            // Steps of a few microseconds, back to back, as under load.
            drop(spare.lend().unwrap());
        }
        // A wake would need this thread preempted while it holds a lend
        // for two ticks; a watcher that woke on every tick would count ~40.
        let woken = wakes.load(Ordering::SeqCst);
        assert!(
            woken < 5,
            "{woken} wakes for steps that all ended within a tick"
        );
    }

    #[test]
    fn the_watcher_sleeps_when_idle_and_wakes_for_the_next_lend() {
        let (spare, wakes) = counting();
        drop(spare.lend().unwrap());
        // Past IDLE_TICKS: asleep.
        std::thread::sleep(TICK * (IDLE_TICKS * 5));
        assert!(
            spare.shared.asleep.load(Ordering::SeqCst),
            "asleep when idle"
        );
        let lent = spare.lend().unwrap();
        std::thread::sleep(TICK * 50);
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "woken by the lend");
        drop(lent);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timers_fire_while_a_lent_thread_is_held() {
        let spare = Arc::new(SpareThreads::new(2, Handle::current()));
        for _ in 0..3 {
            let (lent_tx, lent_rx) = std::sync::mpsc::channel();
            let holder = spare.clone();
            let held = tokio::spawn(async move {
                let _lent = holder.lend().expect("a spare thread");
                lent_tx.send(()).unwrap();
                // A guest that spins: this runtime thread does not come back.
                std::thread::sleep(Duration::from_millis(600));
            });
            lent_rx.recv().unwrap();
            // Driven by the runtime's driver, which the held thread may
            // have been the one to poll.
            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(300),
                "a 20 ms timer took {took:?} while a thread was lent"
            );
            held.await.unwrap();
        }
    }
}
