//! The fleet's life: events, drain, lost blocks, removal.

use super::*;

/// The event a failed placement carries.
fn asks(result: Result<Vec<Placement>, GridError>) -> Option<Event> {
    match result {
        Err(GridError::NoFit(no_fit)) => no_fit.event,
        other => panic!("expected no fit, got {other:?}"),
    }
}

#[test]
fn full_grid_asks_for_a_block() {
    let mut g = Grid::new(autosize(1, 3));
    g.add_block(Block::new("a", 2048)).unwrap();
    g.add_block(Block::new("s", 4096).label("disk", "ssd"))
        .unwrap();
    place(
        &mut g,
        &[
            slice("x.web.1", 2048),
            slice("x.db.1", 4096).label("disk", "ssd"),
        ],
    );
    let err = g.place(&[slice("x.web.2", 1024)]).unwrap_err();
    // As large as the largest block, so the fleet stays alike.
    assert_eq!(
        asks(Err(err.clone())),
        Some(Event::Create {
            size: 4096,
            labels: Labels::new()
        })
    );
    assert!(
        err.to_string()
            .ends_with("; asking for a new block of 4096 MiB"),
        "{err}"
    );
    // A slice larger than any block asks for its own size, with its labels.
    let big = slice("x.db.2", 9000).label("disk", "ssd");
    let event = asks(g.place(std::slice::from_ref(&big)));
    let labels = Labels::from([("disk".to_owned(), "ssd".to_owned())]);
    assert_eq!(event, Some(Event::Create { size: 9000, labels }));
    assert_eq!(
        event.unwrap().to_string(),
        "create a block of 9000 MiB with disk=ssd"
    );
    // At max, or without autosize: no event.
    g.add_block(Block::new("b", 1024)).unwrap();
    assert_eq!(asks(g.place(std::slice::from_ref(&big))), None);
    g.set_options(Options {
        autosize: false,
        ..autosize(1, 10)
    });
    assert_eq!(asks(g.place(&[big])), None);
}

#[test]
fn empty_blocks_may_be_destroyed_above_min() {
    let mut g = Grid::new(autosize(2, 10));
    for (id, size) in [("a", 1024), ("b", 4096), ("c", 2048), ("d", 4096)] {
        g.add_block(Block::new(id, size)).unwrap();
    }
    place(&mut g, &[slice("x.web.1", 1024)]);
    // Four running, min two: two of the three empty ones, largest first.
    let destroy = |ids: &[&str]| -> Vec<Event> {
        ids.iter()
            .map(|id| Event::Destroy {
                block: (*id).into(),
            })
            .collect()
    };
    assert_eq!(g.events(), destroy(&["b", "d"]));
    assert_eq!(g.events()[0].to_string(), "destroy block b");
    // A block that is not running neither counts towards min nor is offered.
    g.set_state("d", BlockState::Unknown).unwrap();
    assert_eq!(g.events(), destroy(&["b"]));
    g.set_options(autosize(3, 10));
    assert_eq!(g.events(), vec![]);
    g.set_options(Options::default());
    g.set_state("d", BlockState::Running).unwrap();
    assert_eq!(g.events(), vec![]);
}

#[test]
fn pinned_blocks_count_but_are_never_destroyed_nor_copied() {
    let mut g = Grid::new(autosize(1, 10));
    g.add_block(Block::new("hq", 24576).pinned()).unwrap();
    g.add_block(Block::new("auto-1", 512)).unwrap();
    g.add_block(Block::new("auto-2", 1024)).unwrap();
    // Three running, min one: both provider blocks may go, never the HQ.
    let ids: Vec<Event> = ["auto-2", "auto-1"]
        .iter()
        .map(|id| Event::Destroy {
            block: (*id).into(),
        })
        .collect();
    assert_eq!(g.events(), ids);
    // Full: a new block looks like the provider's blocks, not like the HQ.
    place(
        &mut g,
        &[
            slice("x.db.1", 24576),
            slice("x.web.1", 1024),
            slice("x.web.2", 512),
        ],
    );
    assert_eq!(
        asks(g.place(&[slice("x.web.3", 256)])),
        Some(Event::Create {
            size: 1024,
            labels: Labels::new()
        })
    );
}

#[test]
fn drain_moves_slices_off() {
    let mut g = grid(&[("a", 1024), ("b", 2048), ("c", 4096)]);
    place(
        &mut g,
        &[
            slice("x.web.1", 512),
            slice("x.web.2", 512),
            slice("x.job.1", 256),
        ],
    );
    assert_eq!(g.slices_on("a").collect::<Vec<_>>(), ["x.job.1", "x.web.1"]);
    let moves = g.drain("a").unwrap();
    let shown: Vec<(&str, &str, &str)> = moves
        .iter()
        .map(|m| (m.slice.as_str(), m.from.as_str(), m.to.as_str()))
        .collect();
    // Largest first; web.1 avoids b, which already holds web.2.
    assert_eq!(shown, [("x.web.1", "a", "c"), ("x.job.1", "a", "b")]);
    assert_eq!(g.block("a").unwrap().state, BlockState::Draining);
    assert_eq!(g.used("a"), Some(0));
    g.remove_block("a").unwrap();
    check(&g);
}

#[test]
fn drain_refuses_when_slices_do_not_fit() {
    let mut g = grid(&[("a", 1024), ("b", 768)]);
    place(
        &mut g,
        &[
            slice("x.web.1", 512),
            slice("x.web.2", 512),
            slice("x.job.1", 256),
        ],
    );
    let before = json(&g);
    let err = g.drain("a").unwrap_err();
    assert!(
        err.to_string().starts_with("no block fits slice x.web"),
        "{err}"
    );
    assert_eq!(json(&g), before);
    assert_eq!(g.block("a").unwrap().state, BlockState::Running);
    assert!(matches!(
        g.drain("nope"),
        Err(GridError::UnknownBlock { .. })
    ));
    check(&g);
}

#[test]
fn lost_block_moves_what_fits_and_reports_the_rest() {
    let mut g = grid(&[("a", 2048), ("b", 1024)]);
    place(&mut g, &[slice("x.big.1", 1536), slice("x.small.1", 256)]);
    assert_eq!(
        g.slices_on("a").collect::<Vec<_>>(),
        ["x.big.1", "x.small.1"]
    );
    let recovery = g.lost("a").unwrap();
    assert_eq!(
        recovery.moved,
        vec![Move {
            slice: "x.small.1".into(),
            from: "a".into(),
            to: "b".into()
        }]
    );
    assert_eq!(recovery.stranded.len(), 1);
    assert!(
        recovery.stranded[0]
            .to_string()
            .starts_with("no block fits slice x.big.1")
    );
    assert_eq!(g.block("a").unwrap().state, BlockState::Unknown);
    assert_eq!(g.location("x.big.1"), Some("a"));
    // A new block arrives; the stranded slice moves on the next try.
    g.add_block(Block::new("c", 2048)).unwrap();
    let recovery = g.lost("a").unwrap();
    assert_eq!(recovery.moved[0].to, "c");
    assert!(recovery.stranded.is_empty());
}

#[test]
fn remove_block_refused_while_it_holds_slices() {
    let mut g = grid(&[("a", 1024)]);
    place(&mut g, &[slice("x.web.1", 512)]);
    let err = g.remove_block("a").unwrap_err();
    assert_eq!(
        err.to_string(),
        "block a still holds 1 slice; drain it first"
    );
    g.release(["x.web.1"]);
    assert_eq!(g.remove_block("a").unwrap().id, "a");
    assert_eq!(g.blocks().count(), 0);
    assert!(matches!(
        g.remove_block("a"),
        Err(GridError::UnknownBlock { .. })
    ));
}

#[test]
fn bad_blocks_and_slices_are_refused() {
    let mut g = grid(&[("a", 1024)]);
    assert_eq!(
        g.add_block(Block::new("a", 5)).unwrap_err().to_string(),
        "block a already exists"
    );
    assert_eq!(
        g.add_block(Block::new("z", 0)).unwrap_err().to_string(),
        "block z has size 0"
    );
    assert_eq!(
        g.place(&[slice("x.y.1", 0)]).unwrap_err().to_string(),
        "slice x.y.1 has size 0"
    );
}
