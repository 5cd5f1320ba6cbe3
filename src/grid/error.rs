//! Why the grid refused: one lower-case line that names the slice or block.

use std::fmt;

use super::types::{Event, Labels, SliceSpec, show};
use super::{Grid, index};

/// Why a slice fits on no running block, and what would help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    /// The slice's id.
    pub slice: String,
    /// Its size in MiB.
    pub size: u64,
    /// The labels it requires.
    pub labels: Labels,
    /// The most free space on a running block that carries the labels;
    /// `None` when no running block carries them.
    pub largest_free: Option<u64>,
    /// Required labels that no running block carries at all.
    pub missing: Labels,
    /// `Create` when `autosize` is on and the fleet is below `max`.
    pub event: Option<Event>,
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let NoFit {
            slice,
            size,
            labels,
            largest_free,
            missing,
            event,
        } = self;
        write!(f, "no block fits slice {slice} ({size} MiB")?;
        let with = if labels.is_empty() {
            String::new()
        } else {
            write!(f, ", needs {}", show(labels))?;
            format!(" with {}", show(labels))
        };
        f.write_str("): ")?;
        match largest_free {
            Some(free) => write!(
                f,
                "the largest free space on a running block{with} is {free} MiB"
            )?,
            None if labels.is_empty() => f.write_str("no block is running")?,
            None if missing.is_empty() => {
                write!(f, "no running block has all of {}", show(labels))?
            }
            None => write!(f, "no running block has {}", show(missing))?,
        }
        if let Some(Event::Create { size, .. }) = event {
            write!(f, "; asking for a new block of {size} MiB")?;
        }
        Ok(())
    }
}

/// Why a grid operation (or loading `grid.json`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridError {
    /// No running block can take the slice (boxed: it is the large one).
    NoFit(Box<NoFit>),
    /// No block has this id.
    UnknownBlock {
        /// The id asked for.
        block: String,
    },
    /// A block with this id is already in the grid.
    DuplicateBlock {
        /// The id.
        block: String,
    },
    /// The block still holds slices, so it cannot be removed.
    BlockInUse {
        /// The block's id.
        block: String,
        /// How many slices it holds.
        slices: usize,
    },
    /// A block or slice with size 0.
    ZeroSize {
        /// `"block"` or `"slice"`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The slice is already placed with another size, group or labels.
    SliceChanged {
        /// The slice's id.
        slice: String,
        /// Where it is placed.
        block: String,
    },
    /// `grid.json` lists a slice twice.
    DuplicateSlice {
        /// The slice's id.
        slice: String,
    },
    /// `grid.json` puts more on a block than it holds.
    Overcommitted {
        /// The block's id.
        block: String,
        /// MiB of slices on it.
        used: u64,
        /// Its size in MiB.
        size: u64,
    },
}

impl fmt::Display for GridError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GridError::NoFit(no_fit) => no_fit.fmt(f),
            GridError::UnknownBlock { block } => write!(f, "unknown block {block}"),
            GridError::DuplicateBlock { block } => write!(f, "block {block} already exists"),
            GridError::BlockInUse { block, slices } => {
                let s = if *slices == 1 { "" } else { "s" };
                write!(
                    f,
                    "block {block} still holds {slices} slice{s}; drain it first"
                )
            }
            GridError::ZeroSize { what, id } => write!(f, "{what} {id} has size 0"),
            GridError::SliceChanged { slice, block } => write!(
                f,
                "slice {slice} is already placed on {block} with another size, group or labels; release it first"
            ),
            GridError::DuplicateSlice { slice } => write!(f, "slice {slice} is listed twice"),
            GridError::Overcommitted { block, used, size } => write!(
                f,
                "block {block} would hold {used} MiB of slices but has {size} MiB"
            ),
        }
    }
}

impl std::error::Error for GridError {}

impl Grid {
    /// Why a slice fits nowhere, and what would help.
    pub(super) fn no_fit(&self, spec: &SliceSpec, set: usize) -> NoFit {
        let largest_free = self.index.largest_free(set);
        let mut missing = Labels::new();
        if largest_free.is_none() {
            for (key, value) in &spec.labels {
                let somewhere = self
                    .blocks
                    .values()
                    .any(|s| s.running() && s.block.labels.get(key) == Some(value));
                if !somewhere {
                    missing.insert(key.clone(), value.clone());
                }
            }
        }
        let event = (self.options.autosize && self.blocks.len() < self.options.max).then(|| {
            let like = self
                .blocks
                .values()
                .filter(|s| !s.block.pinned && index::carries(&s.block.labels, &spec.labels))
                .map(|s| s.block.size)
                .max()
                .unwrap_or(0);
            Event::Create {
                size: like.max(spec.size),
                labels: spec.labels.clone(),
            }
        });
        NoFit {
            slice: spec.id.clone(),
            size: spec.size,
            labels: spec.labels.clone(),
            largest_free,
            missing,
            event,
        }
    }
}
