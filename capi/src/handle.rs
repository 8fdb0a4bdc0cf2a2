//! Handle tables: what C holds is a number, never a pointer to Rust memory.
//!
//! A handle packs a table tag (8 bits), the slot's generation (24 bits) and the slot
//! index + 1 (32 bits). Freeing a slot bumps its generation, so a freed handle, a
//! handle of the other table (client contexts vs server connections) and a made-up
//! number are all told apart from live ones: the caller gets `CS_ERR_BAD_HANDLE`,
//! never a dangling access or a double free. A slot whose generation would wrap
//! (after 2^24 - 1 lives) is retired instead of reused, so a handle kept that long
//! never names a later object (C API audit of 2026-12-06); a retired slot costs its
//! few bytes of table for good.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Which table a handle belongs to (its top byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    /// `coroipcc` contexts (`hdb_handle_t`).
    Client = 0xC1,
    /// `coroipcs` connections (`void *conn`).
    Conn = 0x5E,
}

const GENERATION_MASK: u32 = 0x00FF_FFFF;

struct Slot<T> {
    generation: u32,
    value: Option<Arc<T>>,
}

struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
}

/// A table of live objects addressed by handles.
pub(crate) struct Registry<T> {
    tag: Tag,
    inner: Mutex<Slots<T>>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(tag: Tag) -> Self {
        Registry {
            tag,
            inner: Mutex::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        // A panic while the lock was held cannot leave a slot half-updated (each
        // update is one assignment), so the table is usable after poisoning.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value`; returns its handle (never 0).
    pub(crate) fn insert(&self, value: Arc<T>) -> u64 {
        let mut t = self.lock();
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                t.slots.push(Slot {
                    generation: 1,
                    value: None,
                });
                t.slots.len() - 1
            }
        };
        let slot = &mut t.slots[index];
        slot.value = Some(value);
        self.encode(index, slot.generation)
    }

    fn encode(&self, index: usize, generation: u32) -> u64 {
        (self.tag as u64) << 56 | u64::from(generation & GENERATION_MASK) << 32 | (index as u64 + 1)
    }

    /// The slot index a handle names, if it has this table's tag and generation.
    fn decode(&self, t: &Slots<T>, handle: u64) -> Option<usize> {
        if handle >> 56 != self.tag as u64 {
            return None;
        }
        let index = usize::try_from(handle & 0xFFFF_FFFF).ok()?.checked_sub(1)?;
        let generation = (handle >> 32) as u32 & GENERATION_MASK;
        let slot = t.slots.get(index)?;
        (slot.generation == generation && slot.value.is_some()).then_some(index)
    }

    /// The live object behind `handle`.
    pub(crate) fn get(&self, handle: u64) -> Option<Arc<T>> {
        let t = self.lock();
        let index = self.decode(&t, handle)?;
        t.slots[index].value.clone()
    }

    /// Whether any live object satisfies `pred` (called under the table's lock: it
    /// must not use the table).
    pub(crate) fn any(&self, pred: impl Fn(&T) -> bool) -> bool {
        let t = self.lock();
        t.slots.iter().filter_map(|s| s.value.as_deref()).any(pred)
    }

    /// Removes the object behind `handle`; the handle is dead from now on. The slot
    /// is reused under the next generation, or retired when that would wrap.
    pub(crate) fn remove(&self, handle: u64) -> Option<Arc<T>> {
        let mut t = self.lock();
        let index = self.decode(&t, handle)?;
        let slot = &mut t.slots[index];
        let value = slot.value.take();
        if slot.generation < GENERATION_MASK {
            slot.generation += 1;
            t.free.push(index);
        }
        // Otherwise retired: empty for good, so no handle of it decodes again.
        value
    }

    /// Sets the generation of the slot behind `handle`, for tests of the wrap.
    #[cfg(test)]
    fn set_generation(&self, handle: u64, generation: u32) -> Option<u64> {
        let mut t = self.lock();
        let index = self.decode(&t, handle)?;
        t.slots[index].generation = generation;
        Some(self.encode(index, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_and_foreign_handles_are_rejected() {
        let clients = Registry::new(Tag::Client);
        let conns = Registry::new(Tag::Conn);
        let a = clients.insert(Arc::new(1u32));
        let c = conns.insert(Arc::new(2u32));
        assert_eq!(clients.get(a).as_deref(), Some(&1));
        assert!(
            clients.get(c).is_none(),
            "a connection handle is foreign here"
        );
        assert!(conns.get(a).is_none());
        assert!(clients.get(0).is_none());
        assert!(clients.get(u64::MAX).is_none());
        assert_eq!(clients.remove(a).as_deref(), Some(&1));
        assert!(clients.get(a).is_none(), "freed");
        assert!(clients.remove(a).is_none(), "double free");
        let b = clients.insert(Arc::new(3u32));
        assert_ne!(a, b, "the slot is reused under a new generation");
        assert!(clients.get(a).is_none());
        assert_eq!(clients.get(b).as_deref(), Some(&3));
    }

    #[test]
    fn a_slot_whose_generation_would_wrap_is_retired() {
        let clients = Registry::new(Tag::Client);
        let first = clients.insert(Arc::new(1u32));
        // One life before the last: reused once more, under the last generation.
        let near = clients.set_generation(first, GENERATION_MASK - 1).unwrap();
        assert_eq!(clients.remove(near).as_deref(), Some(&1));
        let last = clients.insert(Arc::new(2u32));
        assert_eq!(last & 0xFFFF_FFFF, first & 0xFFFF_FFFF, "the same slot");
        assert_eq!((last >> 32) as u32 & GENERATION_MASK, GENERATION_MASK);
        // Its last life ends: the slot is not reused (its generation would wrap to 1,
        // and the next object would get `first` again), so no old handle names it.
        assert_eq!(clients.remove(last).as_deref(), Some(&2));
        let next = clients.insert(Arc::new(3u32));
        assert_ne!(next & 0xFFFF_FFFF, first & 0xFFFF_FFFF, "a new slot");
        for stale in [first, near, last] {
            assert!(clients.get(stale).is_none());
            assert!(clients.remove(stale).is_none());
        }
        assert_eq!(clients.get(next).as_deref(), Some(&3));
    }
}
