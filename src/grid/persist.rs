//! The `grid/grid.json` format: options, blocks by id, slices by id with their
//! block. Only what cannot be recomputed is stored; used space, groups and
//! indexes are rebuilt on load, and a file that would overcommit a block or
//! names an unknown block is refused.
//!
//! ```json
//! {"options":{"min":1,"max":10,"autosize":true},
//!  "blocks":[{"id":"srv-1","size":4096,"state":"running"}],
//!  "slices":[{"id":"shop.web.1","group":"shop.web","size":256,"block":"srv-1"}]}
//! ```

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Block, Grid, GridError, Labels, Options, SliceSpec};

#[derive(Serialize)]
struct FileRef<'a> {
    options: &'a Options,
    blocks: Vec<&'a Block>,
    slices: Vec<SliceRef<'a>>,
}

#[derive(Serialize)]
struct SliceRef<'a> {
    id: &'a str,
    group: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    labels: &'a Labels,
    block: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    options: Options,
    #[serde(default)]
    blocks: Vec<Block>,
    #[serde(default)]
    slices: Vec<SliceFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SliceFile {
    id: String,
    group: String,
    size: u64,
    #[serde(default)]
    labels: Labels,
    block: String,
}

impl Serialize for Grid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FileRef {
            options: &self.options,
            blocks: self.blocks.values().map(|s| &s.block).collect(),
            slices: self
                .placements()
                .map(|(spec, block)| SliceRef {
                    id: &spec.id,
                    group: &spec.group,
                    size: spec.size,
                    labels: &spec.labels,
                    block,
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Grid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Grid, D::Error> {
        let file = File::deserialize(deserializer)?;
        Grid::try_from(file).map_err(D::Error::custom)
    }
}

impl TryFrom<File> for Grid {
    type Error = GridError;

    fn try_from(file: File) -> Result<Grid, GridError> {
        let mut grid = Grid::new(file.options);
        for block in file.blocks {
            grid.add_block(block)?;
        }
        for slice in file.slices {
            let spec = SliceSpec {
                id: slice.id,
                group: slice.group,
                size: slice.size,
                labels: slice.labels,
            };
            if spec.size == 0 {
                return Err(GridError::ZeroSize {
                    what: "slice",
                    id: spec.id,
                });
            }
            if grid.slices.contains_key(spec.id.as_str()) {
                return Err(GridError::DuplicateSlice { slice: spec.id });
            }
            let slot = grid.slot(&slice.block)?;
            let block = slot.id.clone();
            if slot.free() < spec.size {
                return Err(GridError::Overcommitted {
                    block: slice.block,
                    used: slot.used + spec.size,
                    size: slot.block.size,
                });
            }
            grid.assign(spec, block);
        }
        Ok(grid)
    }
}
