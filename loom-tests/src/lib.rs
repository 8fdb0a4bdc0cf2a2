//! Helpers shared by the loom models in `tests/`: a doorbell with eventfd semantics
//! (a ring before the wait is remembered) and spin-wait helpers.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`.
#![deny(missing_docs)]

#[cfg(loom)]
pub use model::*;

#[cfg(loom)]
mod model {
    use loom::sync::{Condvar, Mutex};

    /// A doorbell like an eventfd: `ring` sets it, `wait` blocks until set and clears.
    #[derive(Default)]
    pub struct Doorbell {
        rung: Mutex<bool>,
        cond: Condvar,
    }

    impl Doorbell {
        /// A new, unrung doorbell.
        pub fn new() -> Self {
            Doorbell {
                rung: Mutex::new(false),
                cond: Condvar::new(),
            }
        }

        /// Rings it.
        pub fn ring(&self) {
            let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
            *rung = true;
            self.cond.notify_one();
        }

        /// Waits until rung, then clears it.
        pub fn wait(&self) {
            let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
            while !*rung {
                rung = self.cond.wait(rung).unwrap_or_else(|e| e.into_inner());
            }
            *rung = false;
        }
    }

    /// A broadcast doorbell for several sleepers: a generation counter.
    #[derive(Default)]
    pub struct GenBell {
        generation: Mutex<u64>,
        cond: Condvar,
    }

    impl GenBell {
        /// A new doorbell.
        pub fn new() -> Self {
            GenBell {
                generation: Mutex::new(0),
                cond: Condvar::new(),
            }
        }

        /// The current generation; read it before announcing sleep.
        pub fn generation(&self) -> u64 {
            *self.generation.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Wakes every sleeper.
        pub fn ring(&self) {
            *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.cond.notify_all();
        }

        /// Waits until the generation moved past `seen` (a ring since then).
        pub fn wait_past(&self, seen: u64) {
            let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
            while *g == seen {
                g = self.cond.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// A test message of `len` bytes derived from `seed`.
    pub fn msg(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| seed.wrapping_mul(17).wrapping_add(i as u8))
            .collect()
    }
}
