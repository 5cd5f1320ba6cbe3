//! The grid read, never changed: blocks, what they hold and have free,
//! where a slice is, every placement. Pure.

use super::{Block, Grid, Placed, SliceSpec, Slot};

impl Grid {
    /// One block by id.
    pub fn block(&self, id: &str) -> Option<&Block> {
        self.blocks.get(id).map(|s| &s.block)
    }

    /// Every block, by id.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.values().map(|s| &s.block)
    }

    /// MiB held by slices on a block.
    pub fn used(&self, block: &str) -> Option<u64> {
        self.blocks.get(block).map(|s| s.used)
    }

    /// MiB still free on a block (whatever its state).
    pub fn free(&self, block: &str) -> Option<u64> {
        self.blocks.get(block).map(Slot::free)
    }

    /// The ids of the slices on a block, sorted.
    pub fn slices_on(&self, block: &str) -> impl Iterator<Item = &str> {
        self.blocks
            .get(block)
            .into_iter()
            .flat_map(|s| s.slices.iter().map(|id| &**id))
    }

    /// The block a slice is on.
    pub fn location(&self, slice: &str) -> Option<&str> {
        self.slices.get(slice).map(|p| &*p.block)
    }

    /// A placed slice's spec.
    pub fn slice(&self, id: &str) -> Option<&SliceSpec> {
        self.slices.get(id).map(|p| &p.spec)
    }

    /// Every placed slice with its block, by slice id.
    pub fn placements(&self) -> impl Iterator<Item = (&SliceSpec, &str)> {
        let mut all: Vec<&Placed> = self.slices.values().collect();
        all.sort_unstable_by(|a, b| a.spec.id.cmp(&b.spec.id));
        all.into_iter().map(|p| (&p.spec, &*p.block))
    }

    /// How many slices are placed.
    pub fn slice_count(&self) -> usize {
        self.slices.len()
    }
}
