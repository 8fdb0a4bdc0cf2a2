//! The two ways a ring's sides order "I published" against "I sleep": locked
//! read-modify-writes (the default), or an asymmetric fence.
//!
//! # Why a second protocol
//!
//! In the default protocol ([`crate::wake`]) every publish and release is a `swap`
//! whose old value carries the peer's sleep flag. A locked instruction drains the store
//! buffer and must own the index line before it completes, and the peer polls that
//! line, so each one waits for a cache-line transfer. Measured (2026-12-07, `coroipc-bench
//! __pingpong`, both `swap`s replaced by plain stores, three alternating runs): the 64 B
//! ping-pong went from 1.25× rtrb's to 1.0×, and 8 B single messages from 12 to 54–81 M
//! msg/s. Plain stores alone lose wake-ups (a store-buffering race, below).
//!
//! # [`Fences::Asymmetric`]: the protocol
//!
//! Each side's sleep flag is a word of its own, an *epoch* (`Meta::consumer_sleep`,
//! `Meta::producer_sleep`, on the meta line, which nothing else writes after creation),
//! written only by the side it belongs to: odd while it announces sleep, even
//! otherwise, a new value for every announcement.
//!
//! * Publisher (producer publish, consumer release): store the index (`Release`), then
//!   [`light`], then load the peer's epoch (`Relaxed`); an odd epoch it has not rung
//!   for yet means ring the doorbell (so several publishes during one sleep ring once,
//!   as the `swap` clearing the bit did).
//! * Sleeper (`prepare_sleep*`): store a new odd epoch (`Relaxed`), then [`heavy`],
//!   then load the index (`Acquire`); if what it waits for is there, store the next
//!   even epoch and do not sleep.
//!
//! This is Dekker's pattern (store mine, fence, load yours) with the two fences of
//! different weight. [`heavy`] is `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`: it
//! returns only after every thread of every process registered with
//! `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` has run a full memory barrier, or is not
//! running (membarrier(2); the argument of liburcu and of Folly's
//! `asymmetricHeavyBarrier`). So the publisher's program order is cut by a full barrier
//! at a point *P* while the sleeper is inside [`heavy`]:
//!
//! * the publisher's index store before *P*: it is visible to every load after the
//!   barrier, the sleeper's index load included; the sleeper sees the new index and
//!   does not sleep;
//! * its epoch load after *P*: the sleeper's epoch store came before [`heavy`] began,
//!   so the load sees it (or a later value); the publisher rings.
//!
//! A lost wake-up needs the store after *P* and the load before it, against program
//! order, which [`light`] (a compiler fence) keeps the compiler from creating. The
//! publisher pays a plain store and an L1 load of its own line; the sleeper pays a
//! system call, on a path that is about to make one to sleep anyway.
//!
//! **Both processes must be registered**, or the sleeper's barrier does not reach the
//! publisher's threads: creating or attaching an asymmetric ring registers the calling
//! process ([`register`]) and fails with [`AttachError::Unsupported`] when the kernel
//! (before Linux 4.16) or a seccomp filter refuses. The creator chooses the protocol;
//! it is written in the header's `version` (1 locked, 2 asymmetric), and each side
//! keeps its private copy from create or attach time. An MPSC producer cannot join an
//! asymmetric ring (its publishes are read-modify-writes ordered by the flag in the
//! index word).
//!
//! # Verification
//!
//! loom and Miri cannot model `membarrier`: under both, [`light`] and [`heavy`] are
//! `SeqCst` fences, which is the weaker guarantee (the kernel's barrier makes the
//! compiler fence act as a full one; two `SeqCst` fences give the same argument through
//! the fences' total order), so the models check the protocol's logic against that
//! stand-in, not the kernel.

use crate::error::AttachError;

/// How a ring orders publishes against sleep announcements (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fences {
    /// Every publish and release is a locked `swap` carrying the peer's sleep flag
    /// (the layout's version 1). Works everywhere, and with MPSC producers.
    #[default]
    Locked,
    /// Publishes and releases are plain stores; a side about to sleep pays a
    /// `membarrier` for both (the layout's version 2). Linux 4.16 or later, SPSC only.
    Asymmetric,
}

/// The publisher's half: keeps the compiler from moving the epoch load above the index
/// store. The CPU may still (store buffering); [`heavy`] on the sleeper's side is what
/// makes that harmless.
#[inline(always)]
pub(crate) fn light() {
    #[cfg(any(loom, miri))]
    crate::sync::fence_seq_cst();
    #[cfg(not(any(loom, miri)))]
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// The sleeper's half: a full barrier on every registered thread. `false` if the kernel
/// refused it (then nothing is ordered, and the caller must not sleep on it).
#[cold]
pub(crate) fn heavy() -> bool {
    #[cfg(any(loom, miri))]
    {
        crate::sync::fence_seq_cst();
        true
    }
    #[cfg(all(not(any(loom, miri)), target_os = "linux"))]
    {
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_ok()
    }
    #[cfg(all(not(any(loom, miri)), not(target_os = "linux")))]
    {
        false
    }
}

/// Registers this process for [`heavy`] barriers (idempotent; the kernel keeps it for
/// the process's life).
///
/// # Errors
///
/// [`AttachError::Unsupported`] where the kernel or a seccomp filter refuses.
pub(crate) fn register() -> Result<(), AttachError> {
    #[cfg(any(loom, miri))]
    {
        Ok(())
    }
    #[cfg(all(not(any(loom, miri)), target_os = "linux"))]
    {
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::RegisterGlobalExpedited)
            .map_err(|_| AttachError::Unsupported)
    }
    #[cfg(all(not(any(loom, miri)), not(target_os = "linux")))]
    {
        Err(AttachError::Unsupported)
    }
}
