//! Wasmer tunables that keep an instance's memory and tables under
//! `--memory-limit` together, and take instance memories from a
//! [`MemoryPool`] (which starts them from the module's memory image).
//!
//! The limit is shared by the memory and the tables (8 bytes an entry):
//! [`caps`] gives each its maximum, so that the memory's maximum plus every
//! table's maximum fit the limit. The memory comes first: it may grow into
//! whatever the tables' initial sizes leave, and the tables may grow into
//! what the memory's maximum leaves (nothing, for a memory without a
//! maximum of its own, past the last whole page). A `memory.grow` or
//! `table.grow` past its cap returns -1 as the WebAssembly spec says, and a
//! module whose initial sizes are already above the limit fails to
//! instantiate (and is refused at start, `Function::check_limits`).

use std::ptr::NonNull;
use std::sync::Arc;

use wasmer::sys::vm::{
    InternalStoreHandle, MemoryError, MemoryStyle, StoreObjects, TableStyle, VMMemory,
    VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};
use wasmer_compiler::LinkError;
use wasmer_types::entity::PrimaryMap;
use wasmer_types::{LocalMemoryIndex, LocalTableIndex, MemoryIndex, ModuleInfo, TableIndex};

use crate::pool::MemoryPool;

/// Bytes one table entry takes.
pub const TABLE_ENTRY_BYTES: u64 = 8;

/// The largest table wasmer creates (`TABLE_MAX_SIZE` in wasmer-vm).
const TABLE_MAX_ENTRIES: u64 = 128 << 20;

const PAGE: u64 = wasmer::WASM_PAGE_SIZE as u64;

/// The initial and maximum size of a memory (in pages) or a table (in entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub initial: u64,
    pub maximum: Option<u64>,
}

/// What does not fit under the limit from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The initial memories alone are above the limit.
    Memory { index: usize, bytes: u64 },
    /// Table `index` does not fit with the initial memories and the tables before it.
    Table {
        index: usize,
        entries: u64,
        bytes: u64,
    },
}

impl Overflow {
    /// What does not fit, for an error naming `--memory-limit` (`limit` bytes).
    pub fn describe(&self, limit: u64) -> String {
        match self {
            Self::Memory { bytes, .. } => format!(
                "the module's initial memory ({bytes} bytes) is above --memory-limit ({limit} bytes)"
            ),
            Self::Table {
                index,
                entries,
                bytes,
            } => format!(
                "table {index} ({entries} entries, {bytes} bytes) does not fit --memory-limit \
                 ({limit} bytes) with the initial memory and the tables before it"
            ),
        }
    }
}

/// The maxima of an instance's memories (pages) and tables (entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub memories: Vec<u64>,
    pub tables: Vec<u64>,
}

/// Shares `limit` bytes between `memories` and `tables`: every initial size
/// must fit; then each memory in turn grows into what is left, up to its
/// own maximum, and then each table.
pub fn caps(limit: u64, memories: &[Size], tables: &[Size]) -> Result<Caps, Overflow> {
    let mut used = 0u64;
    for (index, memory) in memories.iter().enumerate() {
        used = used.saturating_add(memory.initial.saturating_mul(PAGE));
        if used > limit {
            let bytes = memory.initial.saturating_mul(PAGE);
            return Err(Overflow::Memory { index, bytes });
        }
    }
    for (index, table) in tables.iter().enumerate() {
        let bytes = table.initial.saturating_mul(TABLE_ENTRY_BYTES);
        used = used.saturating_add(bytes);
        if used > limit {
            let entries = table.initial;
            return Err(Overflow::Table {
                index,
                entries,
                bytes,
            });
        }
    }
    let mut left = limit - used;
    let mut grow = |size: &Size, unit: u64, most: u64| {
        let cap = size
            .maximum
            .unwrap_or(most)
            .min(most)
            .min(size.initial + left / unit)
            .max(size.initial);
        left -= (cap - size.initial) * unit;
        cap
    };
    let max_pages = wasmer::WASM_MAX_PAGES as u64;
    Ok(Caps {
        memories: memories.iter().map(|m| grow(m, PAGE, max_pages)).collect(),
        tables: tables
            .iter()
            .map(|t| grow(t, TABLE_ENTRY_BYTES, TABLE_MAX_ENTRIES))
            .collect(),
    })
}

/// [`BaseTunables`] with the memory limit above and pooled memories.
pub struct MemoryLimit {
    limit: u64,
    base: BaseTunables,
    pool: Arc<MemoryPool>,
}

impl MemoryLimit {
    /// Keeps each instance's memory and tables under `bytes`; keeps up to
    /// `pooled` memories for reuse, each starting as `image` (the module's
    /// lifted data, [`crate::image`]).
    pub fn new(bytes: u64, pooled: usize, image: &[u8]) -> std::io::Result<Self> {
        Ok(Self {
            limit: bytes,
            base: BaseTunables::default(),
            pool: MemoryPool::new(pooled, image)?,
        })
    }

    /// The caps of an instance of `module`.
    fn caps(&self, module: &ModuleInfo) -> Result<Caps, String> {
        let memories: Vec<Size> = module.memories.values().map(memory_size).collect();
        let tables: Vec<Size> = module.tables.values().map(table_size).collect();
        caps(self.limit, &memories, &tables).map_err(|overflow| overflow.describe(self.limit))
    }

    /// A memory not of an instance (a host memory): capped at the whole limit.
    fn capped(&self, requested: &MemoryType) -> Result<MemoryType, MemoryError> {
        let size = memory_size(requested);
        let caps =
            caps(self.limit, &[size], &[]).map_err(|_| MemoryError::MinimumMemoryTooLarge {
                min_requested: requested.minimum,
                max_allowed: Pages((self.limit / PAGE) as u32),
            })?;
        Ok(with_maximum(requested, caps.memories[0]))
    }

    /// An instance memory of type `ty`, already capped.
    ///
    /// # Safety
    /// `location` must outlive the memory.
    #[allow(unsafe_code)] // the location comes from wasmer's `Tunables`
    unsafe fn instance_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        if *style == crate::pool::STYLE && !ty.shared {
            // SAFETY: the caller guarantees `location` outlives the memory.
            let memory = unsafe { self.pool.memory(ty, Some(location))? };
            return Ok(VMMemory(Box::new(memory)));
        }
        // SAFETY: the caller's guarantee for `location` is passed on unchanged.
        unsafe { self.base.create_vm_memory(ty, style, location) }
    }
}

fn memory_size(ty: &MemoryType) -> Size {
    Size {
        initial: u64::from(ty.minimum.0),
        maximum: ty.maximum.map(|max| u64::from(max.0)),
    }
}

fn table_size(ty: &TableType) -> Size {
    Size {
        initial: u64::from(ty.minimum),
        maximum: ty.maximum.map(u64::from),
    }
}

fn with_maximum(ty: &MemoryType, pages: u64) -> MemoryType {
    MemoryType {
        maximum: Some(Pages(pages as u32)),
        ..*ty
    }
}

// wasmer's `Tunables` makes creating an instance's memories and tables
// unsafe: they are handed the raw locations of their definitions.
#[allow(unsafe_code)]
impl Tunables for MemoryLimit {
    /// Bounds-checked memories from the pool ([`crate::pool::STYLE`]);
    /// wasmer's own choice for a shared memory, which the pool does not hold.
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        if !memory.shared {
            return crate::pool::STYLE;
        }
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
        // SAFETY: the caller guarantees `vm_definition_location` outlives the memory.
        unsafe { self.instance_memory(&ty, style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        let size = table_size(ty);
        let caps = caps(self.limit, &[], &[size]).map_err(|o| o.describe(self.limit))?;
        let ty = TableType {
            maximum: Some(caps.tables[0] as u32),
            ..*ty
        };
        self.base.create_host_table(&ty, style)
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

    /// The instance's memories, each capped by [`caps`] over the whole module.
    unsafe fn create_memories(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        memory_styles: &PrimaryMap<MemoryIndex, MemoryStyle>,
        memory_definition_locations: &[NonNull<VMMemoryDefinition>],
    ) -> Result<PrimaryMap<LocalMemoryIndex, InternalStoreHandle<VMMemory>>, LinkError> {
        let caps = self.caps(module).map_err(LinkError::Resource)?;
        let defined = module.memories.iter().skip(module.num_imported_memories);
        let mut memories = PrimaryMap::new();
        for (((index, ty), location), pages) in
            defined.zip(memory_definition_locations).zip(&caps.memories)
        {
            let ty = with_maximum(ty, *pages);
            // SAFETY: wasmer passes locations valid for the instance's life.
            let memory = unsafe { self.instance_memory(&ty, &memory_styles[index], *location) }
                .map_err(|e| LinkError::Resource(format!("Failed to create memory: {e}")))?;
            memories.push(InternalStoreHandle::new(context, memory));
        }
        Ok(memories)
    }

    /// The instance's tables, each capped by [`caps`] over the whole module.
    unsafe fn create_tables(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        table_styles: &PrimaryMap<TableIndex, TableStyle>,
        table_definition_locations: &[NonNull<VMTableDefinition>],
    ) -> Result<PrimaryMap<LocalTableIndex, InternalStoreHandle<VMTable>>, LinkError> {
        let caps = self.caps(module).map_err(LinkError::Resource)?;
        let defined = module.tables.iter().skip(module.num_imported_tables);
        let mut tables = PrimaryMap::new();
        for (((index, ty), location), entries) in
            defined.zip(table_definition_locations).zip(&caps.tables)
        {
            let ty = TableType {
                maximum: Some(*entries as u32),
                ..*ty
            };
            // SAFETY: wasmer passes locations valid for the instance's life.
            let table = unsafe {
                self.base
                    .create_vm_table(&ty, &table_styles[index], *location)
            }
            .map_err(LinkError::Resource)?;
            tables.push(InternalStoreHandle::new(context, table));
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(initial: u64, maximum: Option<u64>) -> Size {
        Size { initial, maximum }
    }

    #[test]
    fn the_memory_grows_first_and_the_tables_into_what_is_left() {
        let limit = 16 * PAGE;
        let caps = caps(limit, &[size(2, None)], &[size(10, Some(10))]).unwrap();
        assert_eq!(
            caps.memories,
            [15],
            "80 bytes of table leave 15 whole pages"
        );
        assert_eq!(caps.tables, [10]);
        let caps = caps_of(limit, size(2, Some(4)), size(10, None));
        assert_eq!(caps.memories, [4]);
        assert_eq!(caps.tables, [(limit - 4 * PAGE) / 8]);
        for caps in [caps, caps_of(limit, size(1, None), size(0, None))] {
            let bytes = caps.memories[0] * PAGE + caps.tables[0] * TABLE_ENTRY_BYTES;
            assert!(bytes <= limit, "{caps:?}");
        }
    }

    fn caps_of(limit: u64, memory: Size, table: Size) -> Caps {
        caps(limit, &[memory], &[table]).unwrap()
    }

    #[test]
    fn initial_sizes_above_the_limit_name_what_does_not_fit() {
        let limit = 16 * PAGE;
        assert_eq!(
            caps(limit, &[size(17, None)], &[]),
            Err(Overflow::Memory {
                index: 0,
                bytes: 17 * PAGE
            })
        );
        assert_eq!(
            caps(limit, &[size(15, None)], &[size(1, None), size(8192, None)]),
            Err(Overflow::Table {
                index: 1,
                entries: 8192,
                bytes: PAGE
            })
        );
        let huge = caps(u64::MAX, &[size(1, None)], &[size(1, None)]).unwrap();
        assert_eq!(huge.memories, [wasmer::WASM_MAX_PAGES as u64]);
        assert_eq!(huge.tables, [TABLE_MAX_ENTRIES]);
    }
}
