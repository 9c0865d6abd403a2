//! Reused linear memories, so that a connection's instance maps nothing.
//!
//! Over 400 lines on purpose: the slot policy and the `LinearMemory` it
//! hands out are one unit; its tests are the last 220 lines.
//!
//! The design overview is in `docs/ARCHITECTURE.md`; this is the detail.
//!
//! wasmer's own memories reserve 8 GiB of address space (the 4 GiB a 32-bit
//! index reaches plus a 4 GiB guard, so compiled code needs no bounds checks)
//! with `mmap` and give it back with `munmap`, per instance. Both take the
//! process's `mmap_lock` for writing, and the `munmap` sends TLB shootdowns to
//! every CPU the worker runs on: that was the largest single cost of a
//! connection.
//!
//! Here a memory is a `Slot`: one such reservation, made once and kept.
//! Its memories are dynamic-style ([`STYLE`]): compiled code compares every
//! access with the memory's current length instead of relying on
//! `PROT_NONE` pages past it, so growing a memory moves no protection and
//! a slot never needs narrowing. Its read-write part only widens, to the
//! most any of its memories grew to (a high-water mark); whatever lies past
//! a memory's current length is out of bounds for the guest all the same.
//! Static-style memories (no bounds checks, `mprotect` on every
//! `memory.grow` and again to narrow the slot for its next memory, a grown
//! slot's pages faulted in again every time) cost a function whose
//! allocator grows memory on every request, as Rust's does, about a fifth
//! of the worker's CPU; the bounds checks cost a compute-bound module a
//! few percent at most (bench/README.md, *Bounds checks instead of guard
//! pages*).
//!
//! When an instance's memory is dropped and it wrote at most
//! [`CLEARED_IN_PLACE`] pages (the kernel's `PAGEMAP_SCAN` says which),
//! those are zeroed in place and the slot is free at once: the pages stay,
//! so the next instance takes no page fault on them (wasmtime's
//! `keep_resident` with its pagemap scan does the same). Otherwise the slot
//! is set aside as dirty; once [`BATCH`] are dirty, the pages their
//! memories could reach are handed back to the kernel together, with one
//! `process_madvise(MADV_DONTNEED)` over all of them (so one TLB shootdown
//! for the batch instead of one per connection; plain `madvise` per slot
//! where that call is missing), after which they read as zeros (anonymous
//! private mappings), and the slots become free. A dirty slot is never
//! handed out. Either way only the memory's own size is scanned and reset:
//! nothing past it could be written, and was clean already, so a slot that
//! once grew large costs the next small memory nothing more. Past the
//! read-write part the reservation stays `PROT_NONE`.
//! A slot that cannot be reset is unmapped, never reused.
//!
//! A pool may hold the module's initial memory as an image
//! ([`crate::image`], a sealed `memfd`): every slot then maps it
//! copy-on-write over its first pages when the slot is made, so an instance
//! starts with its data already in place (the lifted module copies none),
//! pages it only reads are the image's own (no fault to zero or copy them,
//! no memory of the instance's), and `MADV_DONTNEED` brings the image back
//! instead of zeros: resetting a slot costs the same as without one.

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMMemoryDefinition};
use wasmer::{MemoryType, Pages, WASM_MAX_PAGES, WASM_PAGE_SIZE};

use crate::sys::{self, ImageFile, Reservation};

/// Dirty slots zeroed together.
pub const BATCH: usize = 16;

/// The most pages an instance may have written for its slot to be zeroed in
/// place when returned (32 KiB: echo writes 4, stream 2), pages kept.
const CLEARED_IN_PLACE: usize = 8;

/// How pooled memories are compiled to be accessed: explicit bounds checks
/// against the current length (no offset guard: an access's static offset
/// is checked too), so that nothing past the length needs to be
/// `PROT_NONE`.
pub const STYLE: MemoryStyle = MemoryStyle::Dynamic {
    offset_guard_size: 0,
};

/// Bytes one slot reserves: the largest 32-bit memory.
fn reservation() -> usize {
    Pages(WASM_MAX_PAGES).bytes().0
}

/// One reserved region; `[0, accessible)` is read-write, the rest `PROT_NONE`.
#[derive(Debug)]
struct Slot {
    region: Reservation,
    /// The most any memory on this slot has grown to; it never narrows.
    accessible: usize,
    /// The size of the last memory handed out on it, when it was given
    /// back: the only part that memory could write (its accesses are
    /// bounds-checked), so the only part to reset. Past it the slot is
    /// still as clean as before, and a connection's reset costs what its
    /// own memory holds, not what an earlier one grew to.
    used: usize,
}

impl Slot {
    fn map(len: usize, image: Option<&ImageFile>) -> Result<Self, MemoryError> {
        let mut region = Reservation::new(len).map_err(|e| {
            MemoryError::Region(format!("reserving {len} bytes for a linear memory: {e}"))
        })?;
        if let Some(image) = image {
            region.map_image(image).map_err(|e| {
                MemoryError::Region(format!(
                    "mapping the memory image into a linear memory: {e}"
                ))
            })?;
        }
        Ok(Self {
            region,
            accessible: 0,
            used: 0,
        })
    }

    fn base(&self) -> NonNull<u8> {
        self.region.base()
    }

    /// Makes at least `[0, bytes)` accessible.
    fn widen_to(&mut self, bytes: usize) -> Result<(), MemoryError> {
        debug_assert!(bytes.is_multiple_of(WASM_PAGE_SIZE));
        if bytes <= self.accessible {
            return Ok(());
        }
        self.region
            .make_read_write(self.accessible..bytes)
            .map_err(|e| MemoryError::Region(format!("mprotect of a linear memory: {e}")))?;
        self.accessible = bytes;
        Ok(())
    }

    /// Zeroes in place the pages the instance wrote, if there are at most
    /// [`CLEARED_IN_PLACE`] (and the kernel can say which): they stay
    /// resident, so the next instance takes no page fault on them and the
    /// slot needs no `madvise`. False when the slot must be [`Slot::zero`]ed.
    fn clear_in_place(&mut self) -> bool {
        let Some(written) = self.region.written_pages(self.used, CLEARED_IN_PLACE) else {
            return false;
        };
        for pages in written {
            self.region.write_zeros(pages);
        }
        true
    }

    /// Gives the used pages back to the kernel: they read as zeros (or
    /// the image) after.
    fn zero(&mut self) -> bool {
        self.region.discard(self.used).is_ok()
    }
}

/// Resets the used pages of every slot in one `process_madvise`
/// call, or with one `madvise` each; returns the slots that are now zero
/// (any other is unmapped).
fn zero_all(mut slots: Vec<Slot>) -> Vec<Slot> {
    let total: usize = slots.iter().map(|slot| slot.used).sum();
    if let Some(pidfd) = sys::own_pidfd()
        && total > 0
    {
        let mut ranges: Vec<(&mut Reservation, usize)> = slots
            .iter_mut()
            .map(|slot| (&mut slot.region, slot.used))
            .collect();
        if sys::discard_all(pidfd, &mut ranges).is_ok_and(|done| done == total) {
            return slots;
        }
    }
    // Per slot (idempotent for those the call above did reach).
    slots
        .into_iter()
        .filter_map(|mut slot| slot.zero().then_some(slot))
        .collect()
}

#[derive(Debug, Default)]
struct Slots {
    /// Zeroed, ready to hand out.
    free: Vec<Slot>,
    /// Returned, not zeroed yet: never handed out.
    dirty: Vec<Slot>,
}

/// Free and dirty slots, at most `keep` of them.
#[derive(Debug)]
pub struct MemoryPool {
    slots: Mutex<Slots>,
    keep: usize,
    batch: usize,
    /// What every memory starts with, mapped into every slot.
    image: Option<ImageFile>,
}

impl MemoryPool {
    /// A pool that keeps at most `keep` unused slots (the rest are
    /// unmapped), whose memories start as `image` (the first bytes of
    /// memory 0, [`crate::image::Lifted::image`]; empty for zeros).
    pub fn new(keep: usize, image: &[u8]) -> std::io::Result<Arc<Self>> {
        Self::with_batch(keep, BATCH, image)
    }

    fn with_batch(keep: usize, batch: usize, image: &[u8]) -> std::io::Result<Arc<Self>> {
        let image = if image.is_empty() {
            None
        } else {
            Some(ImageFile::new(image)?)
        };
        Ok(Arc::new(Self {
            slots: Mutex::new(Slots::default()),
            keep: keep.max(batch),
            batch: batch.max(1),
            image,
        }))
    }

    /// Zeroed slots ready now.
    #[cfg(test)]
    fn free_slots(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.free.len())
    }

    fn take(&self) -> Result<Slot, MemoryError> {
        let reused = self
            .slots
            .lock()
            .ok()
            .and_then(|mut slots| slots.free.pop());
        match reused {
            Some(slot) => Ok(slot),
            None => Slot::map(reservation(), self.image.as_ref()),
        }
    }

    fn give_back(&self, mut slot: Slot) {
        // Cleared in place only when not over an image: a page the
        // instance wrote there is the image's copy, which only
        // `MADV_DONTNEED` brings back.
        let clean = self.image.is_none() && slot.clear_in_place();
        let Ok(mut slots) = self.slots.lock() else {
            return; // dropped: unmapped, never reused
        };
        if slots.free.len() + slots.dirty.len() >= self.keep {
            return;
        }
        if clean {
            slots.free.push(slot);
            return;
        }
        slots.dirty.push(slot);
        if slots.dirty.len() < self.batch {
            return;
        }
        let dirty = std::mem::take(&mut slots.dirty);
        drop(slots);
        let zeroed = zero_all(dirty);
        if let Ok(mut slots) = self.slots.lock() {
            slots.free.extend(zeroed);
        }
    }

    /// A [`STYLE`] memory of type `ty` (its maximum already capped),
    /// zeroed but for the pool's image, whose definition lives at
    /// `definition` (an instance's `VMContext`), or in the memory itself for
    /// `None`. A memory smaller than the image is refused: the image belongs
    /// to one module, whose memory holds it.
    ///
    /// # Safety
    /// `definition`, when given, must be valid for as long as the memory lives.
    #[allow(unsafe_code)] // wasmer's `Tunables` hands over the definition's location
    pub unsafe fn memory(
        self: &Arc<Self>,
        ty: &MemoryType,
        definition: Option<NonNull<VMMemoryDefinition>>,
    ) -> Result<PooledMemory, MemoryError> {
        let maximum = ty
            .maximum
            .unwrap_or(Pages(WASM_MAX_PAGES))
            .min(Pages(WASM_MAX_PAGES));
        if ty.minimum > maximum {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: maximum,
            });
        }
        let bytes = ty.minimum.bytes().0;
        if let Some(image) = &self.image
            && image.end() > bytes
        {
            return Err(MemoryError::Region(format!(
                "a memory of {bytes} bytes cannot start from a memory image of {} bytes",
                image.end()
            )));
        }
        let mut slot = self.take()?;
        slot.widen_to(bytes)?;
        let value = VMMemoryDefinition {
            base: slot.base().as_ptr(),
            current_length: bytes,
        };
        let definition = match definition {
            Some(location) => {
                // SAFETY: the caller guarantees `location` is valid.
                unsafe { location.as_ptr().write(value) };
                Definition::Instance(location)
            }
            None => Definition::Host(Box::new(UnsafeCell::new(value))),
        };
        Ok(PooledMemory {
            slot: Some(slot),
            pool: self.clone(),
            definition,
            ty: MemoryType {
                maximum: Some(maximum),
                ..*ty
            },
            size: ty.minimum,
        })
    }
}

#[derive(Debug)]
enum Definition {
    Instance(NonNull<VMMemoryDefinition>),
    Host(Box<UnsafeCell<VMMemoryDefinition>>),
}

/// A linear memory on a pooled `Slot`, [`STYLE`]: compiled code checks
/// every access against the current length in its definition.
#[derive(Debug)]
pub struct PooledMemory {
    slot: Option<Slot>,
    pool: Arc<MemoryPool>,
    definition: Definition,
    ty: MemoryType,
    size: Pages,
}

// SAFETY: the definition pointer is owned by the instance that owns this
// memory and moves with it, as for wasmer's own `VMOwnedMemory`.
#[allow(unsafe_code)]
unsafe impl Send for PooledMemory {}
// SAFETY: as above; `&self` methods only read.
#[allow(unsafe_code)]
unsafe impl Sync for PooledMemory {}

impl PooledMemory {
    fn definition(&self) -> NonNull<VMMemoryDefinition> {
        match &self.definition {
            Definition::Instance(location) => *location,
            Definition::Host(cell) => NonNull::new(cell.get()).expect("a box is never null"),
        }
    }
}

// wasmer's `LinearMemory` hands out the definition as a raw pointer, which
// `grow` updates.
#[allow(unsafe_code)]
impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType {
            minimum: self.size,
            ..self.ty
        }
    }

    fn size(&self) -> Pages {
        self.size
    }

    fn style(&self) -> MemoryStyle {
        STYLE
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.size;
        if delta.0 == 0 {
            return Ok(previous);
        }
        let could_not = || MemoryError::CouldNotGrow {
            current: previous,
            attempted_delta: delta,
        };
        let new = previous.checked_add(delta).ok_or_else(could_not)?;
        if Some(new) > self.ty.maximum || new > Pages(WASM_MAX_PAGES) {
            return Err(could_not());
        }
        let slot = self.slot.as_mut().ok_or_else(could_not)?;
        slot.widen_to(new.bytes().0)?;
        self.size = new;
        // SAFETY: the definition is valid while this memory lives.
        unsafe { (*self.definition().as_ptr()).current_length = new.bytes().0 };
        Ok(previous)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let current = self.size.bytes().0 as u64;
        if current < min_size {
            let pages = (min_size - current).div_ceil(WASM_PAGE_SIZE as u64);
            self.grow(Pages(u32::try_from(pages).unwrap_or(u32::MAX)))?;
        }
        Ok(())
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition()
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::UnsupportedOperation {
            message: "pooled memories are not copied".to_string(),
        })
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            slot.used = self.size.bytes().0;
            self.pool.give_back(slot);
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    fn ty(min: u32, max: Option<u32>) -> MemoryType {
        MemoryType::new(min, max, false)
    }

    #[test]
    fn reused_slots_are_zeroed_and_sized_to_the_new_memory() {
        let pool = MemoryPool::with_batch(4, 1, &[]).unwrap();
        // SAFETY: host-owned definitions.
        let mut first = unsafe { pool.memory(&ty(1, Some(4)), None) }.unwrap();
        let base = unsafe { first.vmmemory().as_ref().base };
        // SAFETY: the first page is accessible.
        unsafe { base.add(100).write(0xAB) };
        first.grow(Pages(2)).unwrap();
        assert_eq!(first.size(), Pages(3));
        unsafe { base.add(2 * WASM_PAGE_SIZE + 7).write(0xCD) };
        assert!(first.grow(Pages(2)).is_err(), "past the maximum");
        drop(first);
        assert_eq!(pool.free_slots(), 1);

        let second = unsafe { pool.memory(&ty(1, Some(4)), None) }.unwrap();
        let definition = unsafe { *second.vmmemory().as_ref() };
        assert_eq!(definition.base, base, "the slot was reused");
        assert_eq!(definition.current_length, WASM_PAGE_SIZE);
        assert_eq!(second.size(), Pages(1));
        // SAFETY: the first page is accessible; it must read as zeros.
        assert_eq!(unsafe { base.add(100).read() }, 0);
        // SAFETY: the slot stays read-write to its high-water mark; past
        // the length, only the bounds checks of compiled code stop a guest.
        assert_eq!(unsafe { base.add(2 * WASM_PAGE_SIZE + 7).read() }, 0);
        assert_eq!(second.slot.as_ref().unwrap().accessible, 3 * WASM_PAGE_SIZE);
    }

    #[test]
    fn a_grown_slot_is_cleared_in_place_and_its_next_memory_starts_at_its_own_size() {
        let pool = MemoryPool::with_batch(8, 2, &[]).unwrap();
        let mut grown = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        let base = unsafe { grown.vmmemory().as_ref().base };
        grown.grow(Pages(1)).unwrap();
        // SAFETY: both pages are accessible.
        unsafe { base.add(3).write(0xA5) };
        unsafe { base.add(WASM_PAGE_SIZE + 1).write(0x5A) };
        drop(grown);
        assert_eq!(pool.free_slots(), 1, "free at once, no batch, no mprotect");
        let next = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        let definition = unsafe { *next.vmmemory().as_ref() };
        assert_eq!(definition.base, base, "the grown slot is reused");
        assert_eq!(definition.current_length, WASM_PAGE_SIZE, "its own size");
        assert_eq!(next.size(), Pages(1));
        assert_eq!(next.style(), STYLE, "bounds-checked against that length");
        // SAFETY: the slot is still read-write over both pages: zeros.
        assert_eq!(
            unsafe { (base.add(3).read(), base.add(WASM_PAGE_SIZE + 1).read()) },
            (0, 0)
        );
        // Only its one page is reset when it comes back; the grown page,
        // cleared before, reads zeros when a later memory grows over it.
        unsafe { base.add(7).write(0x77) };
        drop(next);
        let mut regrown = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        assert_eq!(unsafe { regrown.vmmemory().as_ref().base }, base);
        regrown.grow(Pages(1)).unwrap();
        let both = unsafe { std::slice::from_raw_parts(base, 2 * WASM_PAGE_SIZE) };
        assert!(both.iter().all(|&b| b == 0), "zeros over both pages");
    }

    #[test]
    fn a_slot_cleared_in_place_once_then_written_all_over_comes_back_zeroed() {
        let pool = MemoryPool::with_batch(4, 1, &[]).unwrap();
        let first = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        let base = unsafe { first.vmmemory().as_ref().base };
        // SAFETY: the first page is accessible.
        unsafe { base.add(5).write(1) };
        drop(first); // cleared in place (or given back)
        let second = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        assert_eq!(unsafe { second.vmmemory().as_ref().base }, base);
        // SAFETY: the whole page is accessible; more pages written than
        // are cleared in place.
        unsafe { base.write_bytes(0xFF, WASM_PAGE_SIZE) };
        drop(second);
        let third = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        assert_eq!(unsafe { third.vmmemory().as_ref().base }, base);
        for offset in [0, 5, 4096, WASM_PAGE_SIZE - 1] {
            // SAFETY: inside the accessible page.
            assert_eq!(unsafe { base.add(offset).read() }, 0, "byte {offset}");
        }
    }

    #[test]
    fn keeps_at_most_keep_free_slots() {
        let pool = MemoryPool::with_batch(1, 1, &[]).unwrap();
        let a = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        let b = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        drop(a);
        drop(b);
        assert_eq!(pool.free_slots(), 1);
    }

    #[test]
    fn dirty_slots_are_zeroed_a_batch_at_a_time_and_only_then_reused() {
        let pool = MemoryPool::with_batch(8, 3, &[]).unwrap();
        let memories: Vec<_> = (0..3)
            .map(|i| {
                let memory = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
                // SAFETY: the first page is accessible; more pages written
                // than are cleared in place, so it goes the madvise way.
                unsafe {
                    memory
                        .vmmemory()
                        .as_ref()
                        .base
                        .write_bytes(i + 1, WASM_PAGE_SIZE)
                };
                memory
            })
            .collect();
        let bases: Vec<_> = memories
            .iter()
            .map(|m| unsafe { m.vmmemory().as_ref().base })
            .collect();
        let mut memories = memories.into_iter();
        drop(memories.next());
        drop(memories.next());
        assert_eq!(pool.free_slots(), 0, "two dirty slots wait for the batch");
        let fresh = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
        assert!(!bases.contains(&unsafe { fresh.vmmemory().as_ref().base }));
        drop(memories.next());
        assert_eq!(pool.free_slots(), 3);
        for _ in 0..3 {
            let reused = unsafe { pool.memory(&ty(1, None), None) }.unwrap();
            let base = unsafe { reused.vmmemory().as_ref().base };
            assert!(bases.contains(&base));
            // SAFETY: the first page is accessible; zeroed.
            assert_eq!(unsafe { base.add(8).read() }, 0);
            std::mem::forget(reused); // keep it out of the pool for this check
        }
        drop(fresh);
    }

    #[test]
    fn a_slot_with_few_written_pages_is_zeroed_in_place_and_free_at_once() {
        assert!(
            crate::sys::Reservation::new(1 << 16)
                .unwrap()
                .written_pages(0, 1)
                .is_some(),
            "PAGEMAP_SCAN (Linux 6.7 or later) is needed for this; without it every slot takes the batch path"
        );
        let pool = MemoryPool::with_batch(8, 4, &[]).unwrap();
        for round in 0..3u8 {
            let memory = unsafe { pool.memory(&ty(2, None), None) }.unwrap();
            let base = unsafe { memory.vmmemory().as_ref().base };
            // SAFETY: both pages are accessible; they read as zeros.
            let all = unsafe { std::slice::from_raw_parts(base, 2 * WASM_PAGE_SIZE) };
            assert!(all.iter().all(|&b| b == 0), "round {round}: zeros");
            unsafe { base.add(10).write(round + 1) };
            unsafe { base.add(WASM_PAGE_SIZE + 4096 * 3).write(0xEE) };
            // A page only read maps the zero page: nothing to clear there.
            let _ = unsafe { base.add(40_000).read_volatile() };
            drop(memory);
            assert_eq!(pool.free_slots(), 1, "round {round}: free without a batch");
        }
    }

    #[test]
    fn minimum_above_maximum_is_refused() {
        let pool = MemoryPool::new(1, &[]).unwrap();
        assert!(unsafe { pool.memory(&ty(3, Some(2)), None) }.is_err());
    }

    #[test]
    fn memories_start_as_the_image_again_after_every_reuse() {
        // Zeros first (a stack, left anonymous), then the data (the file).
        let mut image = vec![0u8; 9000];
        image.extend((1..=5000u32).map(|i| (i % 251) as u8 + 1));
        let pool = MemoryPool::with_batch(4, 1, &image).unwrap();
        for round in 0..3 {
            let mut memory = unsafe { pool.memory(&ty(1, Some(4)), None) }.unwrap();
            let base = unsafe { memory.vmmemory().as_ref().base };
            // SAFETY: the first page is accessible.
            let first = unsafe { std::slice::from_raw_parts(base, WASM_PAGE_SIZE) };
            assert_eq!(&first[..image.len()], &image[..], "round {round}");
            assert!(
                first[image.len()..].iter().all(|&b| b == 0),
                "round {round}"
            );
            // SAFETY: inside the accessible first page; then a grown page.
            unsafe { base.add(10).write(0xAB) };
            unsafe { base.add(9001).write(0) };
            unsafe { base.add(13999).write(0xEE) };
            memory.grow(Pages(1)).unwrap();
            unsafe { base.add(WASM_PAGE_SIZE + 1).write(0xEE) };
            assert_eq!(
                unsafe { (base.add(10).read(), base.add(9001).read()) },
                (0xAB, 0),
                "the writes are the instance's"
            );
            drop(memory);
            assert_eq!(pool.free_slots(), 1, "reset and free again");
        }
        let other = MemoryPool::with_batch(1, 1, &[]).unwrap();
        let zeroed = unsafe { other.memory(&ty(1, None), None) }.unwrap();
        assert_eq!(unsafe { zeroed.vmmemory().as_ref().base.add(10).read() }, 0);
    }

    #[test]
    fn a_memory_smaller_than_the_image_is_refused() {
        let pool = MemoryPool::new(1, &vec![1; WASM_PAGE_SIZE + 1]).unwrap();
        let err = unsafe { pool.memory(&ty(1, None), None) }.unwrap_err();
        assert!(err.to_string().contains("memory image"), "{err}");
        assert!(unsafe { pool.memory(&ty(2, None), None) }.is_ok());
    }
}
