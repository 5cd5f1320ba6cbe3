//! The grid's vocabulary: blocks, slices, options, events and the answers
//! of placement. Plain data, serialisable for `grid.json` and `--json`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::NoFit;

/// Labels a block carries, or the labels a slice requires (each `k=v` must be
/// on the block).
pub type Labels = BTreeMap<String, String>;

/// A server: RAM to hand out to slices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Server id, as in `servers/<id>/`; also breaks ties between equal choices.
    pub id: String,
    /// RAM in MiB that slices may use.
    pub size: u64,
    /// What the server offers (`disk=ssd`, `zone=a`) for slices that require it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Whether it takes new slices.
    pub state: BlockState,
    /// Never offered for `Destroy` (a server added by hand, or the HQ), and
    /// not a model for the size of new blocks; it still counts towards `min`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

impl Block {
    /// A running block without labels.
    pub fn new(id: impl Into<String>, size: u64) -> Block {
        Block {
            id: id.into(),
            size,
            labels: Labels::new(),
            state: BlockState::Running,
            pinned: false,
        }
    }

    /// The same block, never offered for removal.
    pub fn pinned(mut self) -> Block {
        self.pinned = true;
        self
    }

    /// The same block carrying one more label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Block {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// The grid's view of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockState {
    /// Healthy: takes new slices.
    Running,
    /// Being emptied: keeps its slices until they are re-placed, takes no new ones.
    Draining,
    /// Not answering: keeps its slices on record, takes no new ones.
    Unknown,
    /// Switched off on purpose: takes no new slices.
    Stopped,
}

impl BlockState {
    /// The lower-case name used in `grid.json` and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockState::Running => "running",
            BlockState::Draining => "draining",
            BlockState::Unknown => "unknown",
            BlockState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for BlockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceSpec {
    /// `<app>.<node>.<n>`: unique in the grid.
    pub id: String,
    /// `<app>.<node>`: replicas of one group are spread over blocks.
    pub group: String,
    /// RAM in MiB (the node's `memory`).
    pub size: u64,
    /// Labels the block must carry, every one of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

impl SliceSpec {
    /// A slice without label requirements.
    pub fn new(id: impl Into<String>, group: impl Into<String>, size: u64) -> SliceSpec {
        SliceSpec {
            id: id.into(),
            group: group.into(),
            size,
            labels: Labels::new(),
        }
    }

    /// The same slice requiring one more label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> SliceSpec {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Bounds of the fleet and whether the grid asks for it to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Never suggest destroying a block when this many or fewer are running.
    pub min: usize,
    /// Never ask for a new block when the grid holds this many (any state).
    pub max: usize,
    /// Emit `Create` and `Destroy` events at all.
    pub autosize: bool,
}

impl Default for Options {
    /// A fixed fleet: no events, no bounds.
    fn default() -> Options {
        Options {
            min: 0,
            max: usize::MAX,
            autosize: false,
        }
    }
}

/// What the grid asks of the cloud layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The grid is full for a slice: add a server of at least `size` MiB that
    /// carries `labels`.
    Create {
        /// MiB: the slice's size, or the largest block that carries the labels
        /// if that is bigger (new servers look like the existing ones).
        size: u64,
        /// Labels the new server must carry.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: Labels,
    },
    /// The block is empty and the fleet is above `min`: it may be removed.
    Destroy {
        /// The block's id.
        block: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Create { size, labels } if labels.is_empty() => {
                write!(f, "create a block of {size} MiB")
            }
            Event::Create { size, labels } => {
                write!(f, "create a block of {size} MiB with {}", show(labels))
            }
            Event::Destroy { block } => write!(f, "destroy block {block}"),
        }
    }
}

/// Where a slice runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The slice's id.
    pub slice: String,
    /// The block's id.
    pub block: String,
}

/// A slice that moved from one block to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The slice's id.
    pub slice: String,
    /// The block it left.
    pub from: String,
    /// The block it now runs on.
    pub to: String,
}

/// What [`Grid::lost`](super::Grid::lost) could and could not re-place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Slices now on another block: the caller starts them there.
    pub moved: Vec<Move>,
    /// The slices that fit nowhere, and why; they stay on record on the lost
    /// block until a later call places them.
    pub stranded: Vec<NoFit>,
}

/// `k=v,k2=v2`.
pub fn show(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}
