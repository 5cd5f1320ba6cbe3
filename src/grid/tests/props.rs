//! Properties over random operation sequences.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    AddBlock { n: u8, size: u64, ssd: bool },
    Place(Vec<u8>),
    Release(Vec<u8>),
    Drain(u8),
    Revive(u8),
    Remove(u8),
}

/// A slice's spec follows from its number, so the same id always means the
/// same slice.
fn spec(n: u8) -> SliceSpec {
    let s = SliceSpec::new(
        format!("a{}.w.{n}", n % 5),
        format!("a{}.w", n % 5),
        64 * (1 + n as u64 % 7),
    );
    if n.is_multiple_of(6) {
        s.label("disk", "ssd")
    } else {
        s
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..10u8, 1..16u64, any::<bool>()).prop_map(|(n, size, ssd)| Op::AddBlock { n, size: size * 128, ssd }),
        4 => prop::collection::vec(0..40u8, 1..6).prop_map(Op::Place),
        2 => prop::collection::vec(0..40u8, 1..4).prop_map(Op::Release),
        1 => (0..10u8).prop_map(Op::Drain),
        1 => (0..10u8).prop_map(Op::Revive),
        1 => (0..10u8).prop_map(Op::Remove),
    ]
}

proptest! {
    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 1..60)) {
        let mut g = Grid::new(autosize(0, 8));
        for op in ops {
            let before = json(&g);
            match op {
                Op::AddBlock { n, size, ssd } => {
                    let block = Block::new(format!("b{n}"), size);
                    let _ = g.add_block(if ssd { block.label("disk", "ssd") } else { block });
                }
                Op::Place(ns) => {
                    let batch: Vec<SliceSpec> = ns.into_iter().map(spec).collect();
                    match g.place(&batch) {
                        Ok(placed) => for (p, s) in placed.iter().zip(&batch) {
                            prop_assert_eq!(g.location(&s.id), Some(p.block.as_str()));
                        },
                        Err(_) => prop_assert_eq!(json(&g), before),
                    }
                }
                Op::Release(ns) => {
                    g.release(ns.into_iter().map(|n| spec(n).id));
                }
                Op::Drain(n) => {
                    let id = format!("b{n}");
                    match g.drain(&id) {
                        Ok(_) => prop_assert_eq!(g.used(&id), Some(0)),
                        Err(_) => prop_assert_eq!(json(&g), before),
                    }
                }
                Op::Revive(n) => {
                    let _ = g.set_state(&format!("b{n}"), BlockState::Running);
                }
                Op::Remove(n) => {
                    let _ = g.remove_block(&format!("b{n}"));
                }
            }
            check(&g);
        }
    }

    #[test]
    fn index_agrees_with_brute_force(
        blocks in prop::collection::vec((1..16u64, any::<bool>(), 0..4u8), 1..12),
        slices in prop::collection::vec((0..60u8, any::<bool>()), 1..80),
    ) {
        let mut g = Grid::new(Options::default());
        for (n, (size, ssd, state)) in blocks.into_iter().enumerate() {
            let mut block = Block::new(format!("b{n:02}"), size * 128);
            block.state = [BlockState::Running, BlockState::Running, BlockState::Draining, BlockState::Stopped][state as usize];
            g.add_block(if ssd { block.label("disk", "ssd") } else { block }).unwrap();
        }
        for (n, release) in slices {
            let s = spec(n);
            if release {
                g.release([&s.id]);
                continue;
            }
            if g.location(&s.id).is_some() {
                continue;
            }
            let want = naive_choice(&g, &s);
            let got = g.place(std::slice::from_ref(&s)).ok().map(|mut p| p.remove(0).block);
            prop_assert_eq!(got, want);
        }
        check(&g);
    }
}
