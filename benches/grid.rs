//! Slicegrid at fleet scale: 100,000 slices (groups of 1–5 replicas, 64–1024
//! MiB) onto 10,000 servers (4–64 GiB), then losing 10% of the servers.
//!
//! Besides criterion's report, each benchmark prints one line a script can
//! grep: `BENCH <name> median_ms=<ms> iterations=<n>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use quarry::grid::{Block, Grid, Options, SliceSpec};

const SERVERS: usize = 10_000;
const SLICES: usize = 100_000;

/// splitmix64: a fixed, dependency-free stream so every run sees the same fleet.
struct Stream(u64);

impl Stream {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below
    }
}

fn fleet() -> Grid {
    let mut stream = Stream(1);
    let mut grid = Grid::new(Options::default());
    for n in 0..SERVERS {
        let gib = 4 + stream.next(61);
        grid.add_block(Block::new(format!("srv-{n:05}"), gib * 1024))
            .expect("unique server");
    }
    grid
}

fn slices() -> Vec<SliceSpec> {
    let mut stream = Stream(2);
    let mut slices = Vec::with_capacity(SLICES);
    let mut app = 0;
    while slices.len() < SLICES {
        let replicas = (1 + stream.next(5)) as usize;
        let size = 64 * (1 + stream.next(16));
        let group = format!("app{app}.web");
        for r in 1..=replicas.min(SLICES - slices.len()) {
            slices.push(SliceSpec::new(format!("{group}.{r}"), &group, size));
        }
        app += 1;
    }
    slices
}

/// The servers to lose: 10% of the fleet, spread evenly over the servers
/// that hold slices (losing empty ones would measure nothing).
fn victims(grid: &Grid) -> Vec<String> {
    let loaded: Vec<&str> = grid
        .blocks()
        .filter(|b| grid.used(&b.id) > Some(0))
        .map(|b| b.id.as_str())
        .collect();
    let stride = (loaded.len() / (SERVERS / 10)).max(1);
    loaded
        .into_iter()
        .step_by(stride)
        .take(SERVERS / 10)
        .map(str::to_owned)
        .collect()
}

fn median_ms(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    runs[runs.len() / 2].as_secs_f64() * 1e3
}

fn bench(c: &mut Criterion) {
    let empty = fleet();
    let slices = slices();
    let mut placed = empty.clone();
    placed.place(&slices).expect("the fleet has room");
    let victims = victims(&placed);
    let moving: usize = victims.iter().map(|v| placed.slices_on(v).count()).sum();
    println!(
        "fleet: {SERVERS} servers ({} holding slices), {} slices placed, {} MiB used; \
         losing {} servers holding {moving} slices",
        placed
            .blocks()
            .filter(|b| placed.used(&b.id) > Some(0))
            .count(),
        placed.slice_count(),
        placed
            .blocks()
            .map(|b| placed.used(&b.id).unwrap_or(0))
            .sum::<u64>(),
        victims.len(),
    );

    let mut group = c.benchmark_group("grid");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));

    let mut runs = Vec::new();
    group.bench_function("place 100k slices on 10k servers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut grid = empty.clone();
                let start = Instant::now();
                black_box(grid.place(black_box(&slices)).expect("fits"));
                let took = start.elapsed();
                runs.push(took);
                total += took;
            }
            total
        })
    });
    println!(
        "BENCH place_100k_slices_on_10k_servers median_ms={:.1} iterations={}",
        median_ms(runs.clone()),
        runs.len()
    );

    let mut runs = Vec::new();
    group.bench_function("re-place after removing 10% of servers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut grid = placed.clone();
                let start = Instant::now();
                for victim in &victims {
                    let recovery = grid.lost(victim).expect("known server");
                    assert!(recovery.stranded.is_empty());
                    black_box(recovery);
                }
                let took = start.elapsed();
                runs.push(took);
                total += took;
            }
            total
        })
    });
    println!(
        "BENCH replace_after_losing_10pct_of_servers median_ms={:.1} iterations={}",
        median_ms(runs.clone()),
        runs.len()
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
