//! Determinism, `grid.json` and the table.

use super::*;

fn workload(order: &[usize]) -> Grid {
    let mut g = Grid::new(autosize(1, 100));
    for &n in order {
        let block = Block::new(format!("srv-{n}"), 1024 * (1 + n as u64 % 4));
        g.add_block(if n.is_multiple_of(3) {
            block.label("disk", "ssd")
        } else {
            block
        })
        .unwrap();
    }
    for app in 0..20 {
        let batch: Vec<SliceSpec> = (0..app % 4 + 1)
            .map(|r| {
                let s = SliceSpec::new(
                    format!("app{app}.web.{r}"),
                    format!("app{app}.web"),
                    128 + 64 * (app % 5),
                );
                if app.is_multiple_of(7) {
                    s.label("disk", "ssd")
                } else {
                    s
                }
            })
            .collect();
        g.place(&batch).unwrap();
    }
    g.drain("srv-4").unwrap();
    g
}

#[test]
fn same_inputs_same_placement() {
    // Blocks added in another order: ties still go by id.
    let a = workload(&(0..12).collect::<Vec<_>>());
    let b = workload(&(0..12).rev().collect::<Vec<_>>());
    assert_eq!(json(&a), json(&b));
}

#[test]
fn serde_round_trip() {
    let mut g = workload(&(0..12).collect::<Vec<_>>());
    let text = serde_json::to_string_pretty(&g).unwrap();
    let mut back: Grid = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), text);
    assert_eq!(back.table(), g.table());
    check(&back);
    // The reloaded grid places exactly like the original.
    let more: Vec<SliceSpec> = (0..3)
        .map(|n| slice(&format!("late.web.{n}"), 256))
        .collect();
    assert_eq!(back.place(&more), g.place(&more));
    assert_eq!(json(&back), json(&g));
}

#[test]
fn load_refuses_an_inconsistent_file() {
    let over = r#"{"blocks":[{"id":"a","size":100,"state":"running"}],
        "slices":[{"id":"s.1","group":"s","size":60,"block":"a"},{"id":"s.2","group":"s","size":60,"block":"a"}]}"#;
    let err = serde_json::from_str::<Grid>(over).unwrap_err().to_string();
    assert!(
        err.starts_with("block a would hold 120 MiB of slices but has 100 MiB"),
        "{err}"
    );
    let lost = r#"{"slices":[{"id":"s.1","group":"s","size":60,"block":"a"}]}"#;
    let err = serde_json::from_str::<Grid>(lost).unwrap_err().to_string();
    assert!(err.starts_with("unknown block a"), "{err}");
}

#[test]
fn table_shows_blocks() {
    let mut g = grid(&[("a", 1024), ("bb", 16384)]);
    g.add_block(Block {
        state: BlockState::Draining,
        ..Block::new("c", 512)
    })
    .unwrap();
    let web: Vec<SliceSpec> = (1..=8).map(|n| slice(&format!("x.w.{n}"), 128)).collect();
    g.place(&web).unwrap();
    assert_eq!(
        g.table(),
        "\
BLOCK  STATE      SIZE  USED   FREE  SLICES
a      running    1024   512    512  x.w.1 x.w.3 x.w.5 x.w.7
bb     running   16384   512  15872  x.w.2 x.w.4 x.w.6 x.w.8
c      draining    512     0    512  -
3 blocks, 8 slices; MiB: 17920 size, 1024 used, 16896 free
"
    );
}
