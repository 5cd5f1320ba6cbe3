//! How one slice finds its block and how the books follow: choosing (spread
//! over the group, then best fit, then the id), assigning and unassigning
//! (the used memory, the free-space indexes, the group counts), and moving
//! a slice off a block that stopped running. Pure; the rules are in the
//! module's doc (`grid`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Grid, GridError, Id, Move, NoFit, Placed, SliceSpec, Slot, index};

impl Grid {
    pub(super) fn slot(&self, id: &str) -> Result<&Slot, GridError> {
        self.blocks.get(id).ok_or_else(|| GridError::UnknownBlock {
            block: id.to_owned(),
        })
    }

    /// Place one slice; `true` when it was not placed before.
    pub(super) fn place_one(&mut self, spec: &SliceSpec) -> Result<(Id, bool), GridError> {
        if spec.size == 0 {
            return Err(GridError::ZeroSize {
                what: "slice",
                id: spec.id.clone(),
            });
        }
        if let Some(placed) = self.slices.get(spec.id.as_str()) {
            if placed.spec == *spec {
                return Ok((placed.block.clone(), false));
            }
            return Err(GridError::SliceChanged {
                slice: spec.id.clone(),
                block: placed.block.to_string(),
            });
        }
        let set = self.index.ensure(&spec.labels, &mut self.blocks);
        match self.choose(set, spec) {
            Some(block) => {
                self.assign(spec.clone(), block.clone());
                Ok((block, true))
            }
            None => Err(GridError::NoFit(Box::new(self.no_fit(spec, set)))),
        }
    }

    /// The block for a slice: among running blocks that carry its labels and
    /// have room, the fewest of its group, then the least free, then the id.
    pub(super) fn choose(&self, set: usize, spec: &SliceSpec) -> Option<Id> {
        let holders = self.groups.get(&spec.group);
        let spread = self
            .index
            .fitting(set, spec.size)
            .find(|id| holders.is_none_or(|h| !h.contains_key(*id)));
        if let Some(id) = spread {
            return Some(id.clone());
        }
        holders?
            .iter()
            .filter_map(|(id, count)| {
                let slot = &self.blocks[id];
                let fits = slot.running()
                    && slot.free() >= spec.size
                    && index::carries(&slot.block.labels, &spec.labels);
                fits.then_some((*count, slot.free(), id))
            })
            .min()
            .map(|(_, _, id)| id.clone())
    }

    pub(super) fn assign(&mut self, spec: SliceSpec, block: Id) {
        let slot = self
            .blocks
            .get_mut(&block)
            .expect("assign to a known block");
        let before = slot.free();
        slot.used += spec.size;
        debug_assert!(slot.used <= slot.block.size, "overcommit on {block}");
        let id: Id = Arc::from(spec.id.as_str());
        slot.slices.insert(id.clone());
        if slot.running() {
            self.index.shift(&slot.member, &block, before, slot.free());
        }
        match self.groups.get_mut(&spec.group) {
            Some(holders) => *holders.entry(block.clone()).or_insert(0) += 1,
            None => {
                let holders = BTreeMap::from([(block.clone(), 1)]);
                self.groups.insert(spec.group.clone(), holders);
            }
        }
        self.slices.insert(id, Placed { spec, block });
    }

    pub(super) fn unassign(&mut self, id: &str) -> Option<Placed> {
        let placed = self.slices.remove(id)?;
        let slot = self
            .blocks
            .get_mut(&placed.block)
            .expect("slice on a known block");
        let before = slot.free();
        slot.used -= placed.spec.size;
        slot.slices.remove(id);
        if slot.running() {
            self.index
                .shift(&slot.member, &placed.block, before, slot.free());
        }
        let holders = self
            .groups
            .get_mut(&placed.spec.group)
            .expect("group recorded");
        let count = holders.get_mut(&placed.block).expect("holder recorded");
        *count -= 1;
        if *count == 0 {
            holders.remove(&placed.block);
            if holders.is_empty() {
                self.groups.remove(&placed.spec.group);
            }
        }
        Some(placed)
    }

    /// The slices of a block, largest first (they are the hardest to fit),
    /// then by id.
    pub(super) fn evacuation_order(&self, block: &str) -> Vec<Id> {
        let mut ids: Vec<(u64, &Id)> = self.blocks[block]
            .slices
            .iter()
            .map(|id| (self.slices[id].spec.size, id))
            .collect();
        ids.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ids.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Move a slice off its (no longer running) block; on failure it stays.
    pub(super) fn relocate(&mut self, id: &str) -> Result<Move, Box<NoFit>> {
        let placed = self.unassign(id).expect("relocate a placed slice");
        let set = self.index.ensure(&placed.spec.labels, &mut self.blocks);
        match self.choose(set, &placed.spec) {
            Some(to) => {
                self.assign(placed.spec, to.clone());
                Ok(Move {
                    slice: id.to_owned(),
                    from: placed.block.to_string(),
                    to: to.to_string(),
                })
            }
            None => {
                let err = Box::new(self.no_fit(&placed.spec, set));
                self.assign(placed.spec, placed.block);
                Err(err)
            }
        }
    }
}
