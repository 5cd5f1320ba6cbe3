//! Free-space indexes: for each set of required labels, the running blocks
//! that carry them, ordered by `(free MiB, block id)`.
//!
//! Best fit is then one range query: the first entry with `free >= size`.
//! Index 0 (no labels required) holds every running block. Another index is
//! built the first time its label set is asked for and then kept up to date on
//! every change of a block's free space or state; each block lists the indexes
//! it belongs to, so an update touches only those. Apps declare few distinct
//! label sets, so indexes are never dropped.

use std::collections::{BTreeMap, BTreeSet};

use super::{Id, Labels, Slot};

/// Whether a block's labels include every required `k=v`.
pub fn carries(have: &Labels, need: &Labels) -> bool {
    need.iter().all(|(key, value)| have.get(key) == Some(value))
}

#[derive(Debug, Clone)]
pub(super) struct FitIndexes {
    sets: Vec<FitSet>,
    /// The smallest id: the lower bound of range queries.
    floor: Id,
    by_labels: BTreeMap<Labels, usize>,
}

#[derive(Debug, Clone)]
struct FitSet {
    labels: Labels,
    free: BTreeSet<(u64, Id)>,
}

impl FitIndexes {
    pub(super) fn new() -> FitIndexes {
        let any = FitSet {
            labels: Labels::new(),
            free: BTreeSet::new(),
        };
        FitIndexes {
            sets: vec![any],
            floor: Id::from(""),
            by_labels: BTreeMap::from([(Labels::new(), 0)]),
        }
    }

    /// The index for a label set, built from `blocks` if it is new.
    pub(super) fn ensure(&mut self, labels: &Labels, blocks: &mut BTreeMap<Id, Slot>) -> usize {
        if labels.is_empty() {
            return 0;
        }
        if let Some(&n) = self.by_labels.get(labels) {
            return n;
        }
        let n = self.sets.len();
        let mut free = BTreeSet::new();
        for (id, slot) in blocks.iter_mut() {
            if carries(&slot.block.labels, labels) {
                slot.member.push(n);
                if slot.running() {
                    free.insert((slot.free(), id.clone()));
                }
            }
        }
        self.sets.push(FitSet {
            labels: labels.clone(),
            free,
        });
        self.by_labels.insert(labels.clone(), n);
        n
    }

    /// The indexes a block with these labels belongs to.
    pub(super) fn memberships(&self, labels: &Labels) -> Vec<usize> {
        (0..self.sets.len())
            .filter(|&n| carries(labels, &self.sets[n].labels))
            .collect()
    }

    pub(super) fn insert(&mut self, member: &[usize], free: u64, id: &Id) {
        for &n in member {
            self.sets[n].free.insert((free, id.clone()));
        }
    }

    pub(super) fn remove(&mut self, member: &[usize], free: u64, id: &Id) {
        let key = (free, id.clone());
        for &n in member {
            self.sets[n].free.remove(&key);
        }
    }

    /// A running block's free space went from `from` to `to`.
    pub(super) fn shift(&mut self, member: &[usize], id: &Id, from: u64, to: u64) {
        let probe = (from, id.clone());
        for &n in member {
            let set = &mut self.sets[n].free;
            let mut key = set.take(&probe).expect("running block is indexed");
            key.0 = to;
            set.insert(key);
        }
    }

    /// Running blocks of index `set` with at least `size` free, least free first.
    pub(super) fn fitting(&self, set: usize, size: u64) -> impl Iterator<Item = &Id> {
        self.sets[set]
            .free
            .range((size, self.floor.clone())..)
            .map(|(_, id)| id)
    }

    /// The most free space on a running block of index `set`.
    pub(super) fn largest_free(&self, set: usize) -> Option<u64> {
        self.sets[set].free.last().map(|(free, _)| *free)
    }

    /// Every index equals a rebuild from `blocks` (for tests).
    #[cfg(test)]
    pub(super) fn audit(&self, blocks: &BTreeMap<Id, Slot>) -> Result<(), Drift> {
        for (n, set) in self.sets.iter().enumerate() {
            let want: BTreeSet<(u64, Id)> = blocks
                .iter()
                .filter(|(_, s)| s.running() && carries(&s.block.labels, &set.labels))
                .map(|(id, s)| (s.free(), id.clone()))
                .collect();
            if want != set.free {
                return Err(Drift::Free {
                    set: n,
                    have: set.free.clone(),
                    want,
                });
            }
            for (id, slot) in blocks {
                let member = carries(&slot.block.labels, &set.labels);
                if member != slot.member.contains(&n) {
                    return Err(Drift::Membership {
                        id: id.clone(),
                        set: n,
                    });
                }
            }
        }
        Ok(())
    }
}

/// How an index drifted from a rebuild (found by [`FitIndexes::audit`]).
#[cfg(test)]
#[derive(Debug, thiserror::Error)]
pub(super) enum Drift {
    #[error("index {set} is {have:?}, want {want:?}")]
    Free {
        set: usize,
        have: BTreeSet<(u64, Id)>,
        want: BTreeSet<(u64, Id)>,
    },
    #[error("block {id}: membership of index {set} is wrong")]
    Membership { id: Id, set: usize },
}
