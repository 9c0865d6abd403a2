//! Wasmer tunables that cap every linear memory of an instance, and take
//! instance memories from a [`MemoryPool`].
//!
//! The cap becomes the memory's maximum, so a `memory.grow` past it returns
//! -1 as the WebAssembly spec says, and a module whose initial memory is
//! already above it fails to instantiate.

use std::ptr::NonNull;
use std::sync::Arc;

use wasmer::sys::vm::{
    MemoryError, MemoryStyle, TableStyle, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

use crate::pool::MemoryPool;

/// [`BaseTunables`] with a per-memory size limit and pooled memories.
pub struct MemoryLimit {
    limit: Pages,
    base: BaseTunables,
    pool: Arc<MemoryPool>,
}

impl MemoryLimit {
    /// Caps memories at `bytes`, rounded down to whole 64 KiB pages; keeps
    /// up to `pooled` memories for reuse.
    pub fn new(bytes: u64, pooled: usize) -> Self {
        let pages = (bytes / wasmer::WASM_PAGE_SIZE as u64).min(wasmer::WASM_MAX_PAGES as u64);
        Self {
            limit: Pages(pages as u32),
            base: BaseTunables::default(),
            pool: MemoryPool::new(pooled),
        }
    }

    fn capped(&self, requested: &MemoryType) -> Result<MemoryType, MemoryError> {
        if requested.minimum > self.limit {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: requested.minimum,
                max_allowed: self.limit,
            });
        }
        let mut capped = *requested;
        capped.maximum = Some(
            requested
                .maximum
                .map_or(self.limit, |max| max.min(self.limit)),
        );
        Ok(capped)
    }
}

impl Tunables for MemoryLimit {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(&self.capped(ty)?, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.capped(ty)?;
        if *style == MemoryStyle::Static && !ty.shared {
            // SAFETY: the caller guarantees `vm_definition_location` outlives the memory.
            let memory = unsafe { self.pool.memory(&ty, Some(vm_definition_location))? };
            return Ok(VMMemory(Box::new(memory)));
        }
        // SAFETY: the caller's guarantee for `vm_definition_location` is passed on unchanged.
        unsafe {
            self.base
                .create_vm_memory(&ty, style, vm_definition_location)
        }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: the caller's guarantee for `vm_definition_location` is passed on unchanged.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }
}
