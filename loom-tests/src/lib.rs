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

    /// A test message of `len` bytes derived from `seed`.
    pub fn msg(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| seed.wrapping_mul(17).wrapping_add(i as u8))
            .collect()
    }
}
