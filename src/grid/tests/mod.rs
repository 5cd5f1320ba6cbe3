//! The grid's tests: examples per rule, then properties checked against
//! random operation sequences and a brute-force chooser.

use super::*;

mod fleet;
mod persist;
mod place;
mod props;

fn grid(blocks: &[(&str, u64)]) -> Grid {
    let mut grid = Grid::new(Options::default());
    for &(id, size) in blocks {
        grid.add_block(Block::new(id, size)).unwrap();
    }
    grid
}

fn autosize(min: usize, max: usize) -> Options {
    Options {
        min,
        max,
        autosize: true,
    }
}

fn slice(id: &str, size: u64) -> SliceSpec {
    let group = id.rsplit_once('.').map_or(id, |(group, _)| group);
    SliceSpec::new(id, group, size)
}

fn place(grid: &mut Grid, slices: &[SliceSpec]) -> Vec<String> {
    grid.place(slices)
        .unwrap()
        .into_iter()
        .map(|p| p.block)
        .collect()
}

fn json(grid: &Grid) -> String {
    serde_json::to_string(grid).unwrap()
}

/// Every invariant of the grid, from the public view and the internals.
fn check(grid: &Grid) {
    let mut used: BTreeMap<&str, u64> = BTreeMap::new();
    for (spec, block) in grid.placements() {
        let b = grid.block(block).expect("slice on a known block");
        assert!(
            matches!(b.state, BlockState::Running | BlockState::Draining),
            "{} on {block} which is {}",
            spec.id,
            b.state
        );
        assert!(
            index::carries(&b.labels, &spec.labels),
            "{} on {block} lacks labels",
            spec.id
        );
        *used.entry(block).or_default() += spec.size;
    }
    for b in grid.blocks() {
        let u = used.get(b.id.as_str()).copied().unwrap_or(0);
        assert!(
            u <= b.size,
            "block {} overcommitted: {u} > {}",
            b.id,
            b.size
        );
        assert_eq!(grid.used(&b.id), Some(u), "used of {}", b.id);
    }
    grid.index.audit(&grid.blocks).unwrap();
    let mut groups: BTreeMap<&str, BTreeMap<&str, u32>> = BTreeMap::new();
    for (spec, block) in grid.placements() {
        *groups
            .entry(&spec.group)
            .or_default()
            .entry(block)
            .or_default() += 1;
    }
    let recorded: BTreeMap<&str, BTreeMap<&str, u32>> = grid
        .groups
        .iter()
        .map(|(g, h)| (g.as_str(), h.iter().map(|(b, n)| (&**b, *n)).collect()))
        .collect();
    assert_eq!(recorded, groups);
}

/// The rule, by brute force over every block: fewest of the group, least
/// free, smallest id.
fn naive_choice(grid: &Grid, spec: &SliceSpec) -> Option<String> {
    grid.blocks()
        .filter(|b| b.state == BlockState::Running)
        .filter(|b| index::carries(&b.labels, &spec.labels))
        .filter(|b| grid.free(&b.id).unwrap() >= spec.size)
        .map(|b| {
            let same = grid
                .slices_on(&b.id)
                .filter(|s| grid.slice(s).unwrap().group == spec.group)
                .count();
            (same, grid.free(&b.id).unwrap(), b.id.clone())
        })
        .min()
        .map(|(_, _, id)| id)
}
