//! Placement: fit, best fit, spread, labels, refusals.

use super::*;

#[test]
fn slice_fits_on_a_block() {
    let mut g = grid(&[("a", 1024)]);
    let placed = g.place(&[slice("shop.web.1", 256)]).unwrap();
    assert_eq!(
        placed,
        vec![Placement {
            slice: "shop.web.1".into(),
            block: "a".into()
        }]
    );
    assert_eq!((g.used("a"), g.free("a")), (Some(256), Some(768)));
    assert_eq!(g.location("shop.web.1"), Some("a"));
    check(&g);
}

#[test]
fn best_fit_takes_the_tightest_block() {
    let mut g = grid(&[("big", 4096), ("small", 512), ("tiny", 128), ("mid", 1024)]);
    assert_eq!(place(&mut g, &[slice("x.a.1", 300)]), ["small"]);
    assert_eq!(place(&mut g, &[slice("x.b.1", 300)]), ["mid"]);
    assert_eq!(place(&mut g, &[slice("x.c.1", 200)]), ["small"]);
}

#[test]
fn ties_go_to_the_smaller_id() {
    let mut g = grid(&[("c", 1024), ("a", 1024), ("b", 1024)]);
    assert_eq!(place(&mut g, &[slice("x.a.1", 100)]), ["a"]);
    assert_eq!(place(&mut g, &[slice("x.b.1", 100)]), ["a"]);
}

#[test]
fn batch_is_placed_largest_first_and_answered_in_order() {
    // Arrival order would put 200 on "s" and leave 300 nowhere.
    let mut g = grid(&[("s", 300), ("t", 250)]);
    assert_eq!(
        place(&mut g, &[slice("x.a.1", 200), slice("x.b.1", 300)]),
        ["t", "s"]
    );
}

#[test]
fn replicas_spread_across_blocks() {
    let mut g = grid(&[("a", 4096), ("b", 4096), ("c", 8192)]);
    let web: Vec<SliceSpec> = (1..=3)
        .map(|n| slice(&format!("shop.web.{n}"), 512))
        .collect();
    assert_eq!(place(&mut g, &web), ["a", "b", "c"]);
    // Another group packs by best fit again, starting over.
    assert_eq!(place(&mut g, &[slice("shop.worker.1", 512)]), ["a"]);
    check(&g);
}

#[test]
fn spread_shares_a_block_when_replicas_outnumber_blocks() {
    let mut g = grid(&[("a", 4096), ("b", 2048)]);
    let web: Vec<SliceSpec> = (1..=5)
        .map(|n| slice(&format!("shop.web.{n}"), 256))
        .collect();
    // Rounds: b, a (one each), then b, a (two each), then b (least free of the tie).
    assert_eq!(place(&mut g, &web), ["b", "a", "b", "a", "b"]);
    check(&g);
}

#[test]
fn spread_yields_to_room() {
    let mut g = grid(&[("a", 1024), ("b", 256)]);
    place(&mut g, &[slice("x.other.1", 256)]); // fills b
    assert_eq!(
        place(&mut g, &[slice("x.web.1", 256), slice("x.web.2", 256)]),
        ["a", "a"]
    );
}

#[test]
fn labels_must_all_match() {
    let mut g = Grid::new(Options::default());
    g.add_block(Block::new("plain", 8192)).unwrap();
    g.add_block(Block::new("ssd", 8192).label("disk", "ssd"))
        .unwrap();
    g.add_block(
        Block::new("ssd-eu", 16384)
            .label("disk", "ssd")
            .label("zone", "eu"),
    )
    .unwrap();
    let db = slice("x.db.1", 512).label("disk", "ssd");
    let eu = slice("x.eu.1", 512)
        .label("disk", "ssd")
        .label("zone", "eu");
    assert_eq!(place(&mut g, &[db, eu]), ["ssd", "ssd-eu"]);
    // Blocks added later join the label indexes already built.
    g.add_block(
        Block::new("ssd-eu-2", 1024)
            .label("zone", "eu")
            .label("disk", "ssd"),
    )
    .unwrap();
    let eu2 = slice("x.eu2.1", 512)
        .label("disk", "ssd")
        .label("zone", "eu");
    assert_eq!(place(&mut g, &[eu2]), ["ssd-eu-2"]);
    check(&g);
}

#[test]
fn no_fit_says_why() {
    let mut g = grid(&[("a", 1024), ("b", 512)]);
    let err = g.place(&[slice("shop.web.1", 2048)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no block fits slice shop.web.1 (2048 MiB): the largest free space on a running block is 1024 MiB"
    );
    let err = g
        .place(&[slice("shop.db.1", 256).label("disk", "ssd")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no block fits slice shop.db.1 (256 MiB, needs disk=ssd): no running block has disk=ssd"
    );
    g.add_block(Block::new("s", 128).label("disk", "ssd"))
        .unwrap();
    let err = g
        .place(&[slice("shop.db.1", 256).label("disk", "ssd")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no block fits slice shop.db.1 (256 MiB, needs disk=ssd): \
         the largest free space on a running block with disk=ssd is 128 MiB"
    );
    g.add_block(Block::new("e", 128).label("zone", "eu"))
        .unwrap();
    let both = slice("shop.db.1", 64)
        .label("disk", "ssd")
        .label("zone", "eu");
    let err = g.place(&[both]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no block fits slice shop.db.1 (64 MiB, needs disk=ssd,zone=eu): \
         no running block has all of disk=ssd,zone=eu"
    );
    let err = Grid::new(Options::default())
        .place(&[slice("x.y.1", 1)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no block fits slice x.y.1 (1 MiB): no block is running"
    );
}

#[test]
fn failed_batch_changes_nothing() {
    let mut g = grid(&[("a", 1024), ("b", 1024)]);
    place(&mut g, &[slice("x.old.1", 512)]);
    let before = json(&g);
    let batch: Vec<SliceSpec> = (1..=4).map(|n| slice(&format!("x.web.{n}"), 512)).collect();
    assert!(matches!(g.place(&batch), Err(GridError::NoFit(_))));
    assert_eq!(json(&g), before);
    assert_eq!(g.location("x.web.1"), None);
    check(&g);
}

#[test]
fn placing_again_is_a_no_op() {
    let mut g = grid(&[("a", 1024), ("b", 2048)]);
    let first = place(&mut g, &[slice("x.web.1", 512)]);
    let before = json(&g);
    assert_eq!(place(&mut g, &[slice("x.web.1", 512)]), first);
    assert_eq!(json(&g), before);
    let err = g.place(&[slice("x.web.1", 768)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "slice x.web.1 is already placed on a with another size, group or labels; release it first"
    );
    assert_eq!(json(&g), before);
}

#[test]
fn release_frees_space() {
    let mut g = grid(&[("a", 1024)]);
    place(&mut g, &[slice("x.web.1", 512), slice("x.web.2", 512)]);
    let freed = g.release(["x.web.1", "nope"]);
    assert_eq!(
        freed,
        vec![Placement {
            slice: "x.web.1".into(),
            block: "a".into()
        }]
    );
    assert_eq!(g.free("a"), Some(512));
    assert_eq!(place(&mut g, &[slice("x.web.3", 512)]), ["a"]);
    check(&g);
}

#[test]
fn only_running_blocks_take_slices() {
    let mut g = grid(&[("a", 1024), ("b", 4096)]);
    for state in [
        BlockState::Draining,
        BlockState::Unknown,
        BlockState::Stopped,
    ] {
        g.set_state("a", state).unwrap();
        assert_eq!(place(&mut g, &[slice(&format!("x.{state}.1"), 256)]), ["b"]);
    }
    g.set_state("a", BlockState::Running).unwrap();
    assert_eq!(place(&mut g, &[slice("x.back.1", 256)]), ["a"]);
    assert!(matches!(
        g.set_state("zz", BlockState::Running),
        Err(GridError::UnknownBlock { .. })
    ));
    check(&g);
}

#[test]
fn record_puts_a_slice_where_it_is_and_never_overcommits() {
    let mut grid = Grid::new(Options::default());
    grid.add_block(Block::new("a", 1000)).unwrap();
    grid.add_block(Block::new("b", 1000)).unwrap();
    grid.record(SliceSpec::new("x.web.1", "x.web", 600), "b")
        .unwrap();
    assert_eq!(grid.location("x.web.1"), Some("b"));
    let err = grid
        .record(SliceSpec::new("x.web.2", "x.web", 600), "b")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "block b would hold 1200 MiB of slices but has 1000 MiB"
    );
    assert!(
        grid.record(SliceSpec::new("x.web.1", "x.web", 10), "a")
            .is_err(),
        "an id is recorded once"
    );
    assert!(grid.record(SliceSpec::new("y", "y", 10), "nosuch").is_err());
    // The next placement of the group spreads away from the recorded one.
    let placed = grid
        .place(&[SliceSpec::new("x.web.3", "x.web", 100)])
        .unwrap();
    assert_eq!(placed[0].block, "a");
}
