//! Slicegrid: where each container runs.
//!
//! Servers are *blocks* (RAM in MiB, labels, a state); containers are
//! *slices* (an id, a group of replicas, a size, required labels). The grid
//! places slices onto blocks, keeps the allocation (persisted by the caller as
//! `grid/grid.json`, see [`Grid`]'s serde impls) and tells the cloud layer when
//! the fleet should grow ([`Event::Create`], carried by [`NoFit`])
//! or shrink ([`Event::Destroy`], from [`Grid::events`]).
//!
//! The module is pure: no I/O, no clock, no randomness, no hashing with random
//! seeds. The same calls on the same grid give the same placement, so plans
//! are reproducible and tests are plain data. Only callers talk to Docker or
//! to a provider.
//!
//! # Rules
//! - Only `Running` blocks take new slices. `Draining`, `Unknown` and
//!   `Stopped` blocks keep the slices on record until they are moved.
//! - Never overcommit: the slices on a block never add up to more than its size.
//! - A slice goes only to a block that carries every `k=v` label it requires.
//! - Spread first: a replica goes to a block holding the fewest slices of its
//!   group. Spread is a preference, never a reason to refuse.
//! - Then best fit: the block with the least free memory that still fits.
//! - Ties go to the smaller block id.
//! - A batch is all-or-nothing and placed largest slice first (ties in the
//!   order given), which packs better than arrival order.
//! - Placing a slice that is already placed with the same spec is a no-op that
//!   returns its block; with a different spec it is refused.
//! - `autosize` gates both events. `Create` is offered while the grid holds
//!   fewer than `max` blocks; `Destroy` names empty running blocks, largest
//!   first, while more than `min` blocks are running.
//!
//! # Speed
//! Best fit is a range query on a `BTreeSet` of `(free, block id)` kept per
//! set of required labels (see `index`); spreading skips the few blocks that
//! already hold the group. Placing is O(log blocks + group size) per slice.
//!
//! # Layout
//! - `types`: blocks, slices, options, events (plain data)
//! - `index`: the free-space indexes
//! - `hash`: a fixed-key hash for the id lookup tables
//! - `error`: [`GridError`], [`NoFit`] and their messages
//! - `placing`: choosing a block, assigning, unassigning, relocating
//! - `query`: the read-only views (blocks, usage, locations, placements)
//! - `persist`: the `grid.json` format
//! - `table`: the human table of `quarry grid`
//! - `tests`: examples per rule, and properties against a brute-force chooser

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod error;
mod hash;
mod index;
mod persist;
mod placing;
mod query;
mod table;
#[cfg(test)]
mod tests;
mod types;

pub use error::{GridError, NoFit};
use hash::FixedMap;
use index::FitIndexes;
pub use index::carries;
pub use types::show as show_labels;
pub use types::{Block, BlockState, Event, Labels, Move, Options, Placement, Recovery, SliceSpec};

/// A block or slice id inside the grid: shared, so that the indexes and the
/// allocation refer to it without copying the string.
type Id = Arc<str>;

/// Blocks, the allocation of slices onto them, and the indexes that make
/// placement fast. Serialises to the `grid.json` format (indexes are rebuilt
/// on load).
#[derive(Debug, Clone)]
pub struct Grid {
    options: Options,
    blocks: BTreeMap<Id, Slot>,
    slices: FixedMap<Id, Placed>,
    /// group -> block -> how many of the group's slices the block holds: the
    /// blocks to skip first when spreading.
    groups: FixedMap<String, BTreeMap<Id, u32>>,
    index: FitIndexes,
}

/// A block and what it holds.
#[derive(Debug, Clone)]
struct Slot {
    id: Id,
    block: Block,
    used: u64,
    slices: BTreeSet<Id>,
    /// The free-space indexes whose labels this block carries (whatever its
    /// state; only running blocks are entered in them).
    member: Vec<usize>,
}

impl Slot {
    fn free(&self) -> u64 {
        self.block.size - self.used
    }

    fn running(&self) -> bool {
        self.block.state == BlockState::Running
    }
}

/// A placed slice.
#[derive(Debug, Clone)]
struct Placed {
    spec: SliceSpec,
    block: Id,
}

impl Grid {
    /// An empty grid.
    pub fn new(options: Options) -> Grid {
        Grid {
            options,
            blocks: BTreeMap::new(),
            slices: FixedMap::default(),
            groups: FixedMap::default(),
            index: FitIndexes::new(),
        }
    }

    /// The fleet bounds in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Change the fleet bounds (they come from `config.yml`).
    pub fn set_options(&mut self, options: Options) {
        self.options = options;
    }

    /// Add a server. Its id must be new and its size above zero.
    pub fn add_block(&mut self, block: Block) -> Result<(), GridError> {
        if block.size == 0 {
            return Err(GridError::ZeroSize {
                what: "block",
                id: block.id,
            });
        }
        if self.blocks.contains_key(block.id.as_str()) {
            return Err(GridError::DuplicateBlock { block: block.id });
        }
        let id: Id = Arc::from(block.id.as_str());
        let member = self.index.memberships(&block.labels);
        if block.state == BlockState::Running {
            self.index.insert(&member, block.size, &id);
        }
        let slot = Slot {
            id: id.clone(),
            block,
            used: 0,
            slices: BTreeSet::new(),
            member,
        };
        self.blocks.insert(id, slot);
        Ok(())
    }

    /// Forget a server. Refused while it holds slices: drain it first.
    pub fn remove_block(&mut self, id: &str) -> Result<Block, GridError> {
        let slot = self.blocks.get(id).ok_or_else(|| GridError::UnknownBlock {
            block: id.to_owned(),
        })?;
        if !slot.slices.is_empty() {
            return Err(GridError::BlockInUse {
                block: id.to_owned(),
                slices: slot.slices.len(),
            });
        }
        if slot.running() {
            self.index.remove(&slot.member, slot.free(), &slot.id);
        }
        let slot = self.blocks.remove(id).expect("checked above");
        Ok(slot.block)
    }

    /// Record what reality says about a server. Slices stay where they are.
    pub fn set_state(&mut self, id: &str, state: BlockState) -> Result<(), GridError> {
        let slot = self
            .blocks
            .get_mut(id)
            .ok_or_else(|| GridError::UnknownBlock {
                block: id.to_owned(),
            })?;
        let was = slot.block.state;
        if was == state {
            return Ok(());
        }
        slot.block.state = state;
        if was == BlockState::Running {
            self.index.remove(&slot.member, slot.free(), &slot.id);
        }
        if state == BlockState::Running {
            self.index.insert(&slot.member, slot.free(), &slot.id);
        }
        Ok(())
    }

    /// Place a batch of slices, all or nothing: on error the grid is as it
    /// was. Returns one placement per slice, in the order given.
    pub fn place(&mut self, slices: &[SliceSpec]) -> Result<Vec<Placement>, GridError> {
        self.slices.reserve(slices.len());
        let mut order: Vec<usize> = (0..slices.len()).collect();
        order.sort_by(|&a, &b| slices[b].size.cmp(&slices[a].size));
        let mut blocks = vec![String::new(); slices.len()];
        let mut fresh: Vec<&str> = Vec::new();
        for n in order {
            let spec = &slices[n];
            match self.place_one(spec) {
                Ok((block, new)) => {
                    if new {
                        fresh.push(&spec.id);
                    }
                    blocks[n] = block.to_string();
                }
                Err(err) => {
                    for id in fresh.iter().rev() {
                        self.unassign(id);
                    }
                    return Err(err);
                }
            }
        }
        Ok(slices
            .iter()
            .zip(blocks)
            .map(|(spec, block)| Placement {
                slice: spec.id.clone(),
                block,
            })
            .collect())
    }

    /// Record a slice where it already is (a container found running on a
    /// server), without choosing: refused if the id is placed already or the
    /// block would be overcommitted, so the grid never holds more than fits.
    pub fn record(&mut self, spec: SliceSpec, block: &str) -> Result<(), GridError> {
        if spec.size == 0 {
            return Err(GridError::ZeroSize {
                what: "slice",
                id: spec.id,
            });
        }
        if self.slices.contains_key(spec.id.as_str()) {
            return Err(GridError::DuplicateSlice { slice: spec.id });
        }
        let slot = self.slot(block)?;
        if slot.used + spec.size > slot.block.size {
            return Err(GridError::Overcommitted {
                block: block.to_owned(),
                used: slot.used + spec.size,
                size: slot.block.size,
            });
        }
        let id = slot.id.clone();
        self.assign(spec, id);
        Ok(())
    }

    /// Free slices. Ids that are not placed are skipped; returns where the
    /// freed ones were.
    pub fn release<I>(&mut self, ids: I) -> Vec<Placement>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        ids.into_iter()
            .filter_map(|id| self.unassign(id.as_ref()))
            .map(|placed| Placement {
                slice: placed.spec.id,
                block: placed.block.to_string(),
            })
            .collect()
    }

    /// Mark a block `Draining` and move every slice it holds elsewhere, all or
    /// nothing: if one does not fit, nothing moves and the state is kept.
    pub fn drain(&mut self, id: &str) -> Result<Vec<Move>, GridError> {
        let before = self.slot(id)?.block.state;
        self.set_state(id, BlockState::Draining)?;
        let mut moves = Vec::new();
        for slice in self.evacuation_order(id) {
            match self.relocate(&slice) {
                Ok(moved) => moves.push(moved),
                Err(err) => {
                    for moved in moves.iter().rev() {
                        let placed = self.unassign(&moved.slice).expect("just moved");
                        let from = self.blocks[moved.from.as_str()].id.clone();
                        self.assign(placed.spec, from);
                    }
                    self.set_state(id, before)?;
                    return Err(GridError::NoFit(err));
                }
            }
        }
        Ok(moves)
    }

    /// A block died: mark it `Unknown` and move what fits elsewhere. Slices
    /// that fit nowhere stay on record on the lost block and are reported.
    pub fn lost(&mut self, id: &str) -> Result<Recovery, GridError> {
        self.set_state(id, BlockState::Unknown)?;
        let mut recovery = Recovery {
            moved: Vec::new(),
            stranded: Vec::new(),
        };
        for slice in self.evacuation_order(id) {
            match self.relocate(&slice) {
                Ok(moved) => recovery.moved.push(moved),
                Err(err) => recovery.stranded.push(*err),
            }
        }
        Ok(recovery)
    }

    /// What the cloud layer should do now: `Destroy` for empty running blocks
    /// that are not pinned (largest first, then by id) while more than `min`
    /// are running. Empty
    /// unless `autosize`. `Create` comes with the [`NoFit`] that needs it.
    pub fn events(&self) -> Vec<Event> {
        if !self.options.autosize {
            return Vec::new();
        }
        let running = self.blocks.values().filter(|s| s.running()).count();
        let spare = running.saturating_sub(self.options.min);
        let mut empty: Vec<&Block> = self
            .blocks
            .values()
            .filter(|s| s.running() && s.slices.is_empty() && !s.block.pinned)
            .map(|s| &s.block)
            .collect();
        empty.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
        empty
            .into_iter()
            .take(spare)
            .map(|b| Event::Destroy {
                block: b.id.clone(),
            })
            .collect()
    }
}
