//! `cohort bench-hops`: what one hop between two actors costs on the node's own runtime.
//!
//! The deterministic simulation advances simulated time by one executor cycle (`--cycle-us`)
//! for every task a message wakes, so a latency it reports carries one cycle per hop on the
//! duty's path. This measures what such a hop costs for real: a request sent through a bounded
//! mailbox with a oneshot for its answer, as the actors' mailboxes are, to an actor on the
//! tokio runtime the node runs on, one request at a time (two hops per round trip, none
//! overlapping), so the figure says which cycle models the node without flattering it.

use commonware_runtime::{Runner as _, Spawner as _, Supervisor as _, tokio};
use commonware_utils::channel::{mpsc, oneshot};
use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

/// `cohort bench-hops`'s flags.
#[derive(clap::Parser)]
pub struct Args {
    /// Worker threads of the tokio runtime (default: every core, as the node runs).
    #[arg(long)]
    threads: Option<usize>,
    /// Batches measured; the median batch is the figure.
    #[arg(long, default_value_t = 21)]
    batches: usize,
    /// Round trips (two hops each) per batch.
    #[arg(long, default_value_t = 20_000)]
    round_trips: u64,
}

/// Runs the bench and prints its figures.
pub fn run(args: Args) -> ExitCode {
    if args.threads == Some(0) || args.batches == 0 || args.round_trips == 0 {
        eprintln!("error: --threads, --batches and --round-trips must be at least 1");
        return ExitCode::from(2);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let hops = measure(threads, args.batches, args.round_trips);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "cohort bench-hops: {} hops on the tokio runtime ({threads} worker threads), one request \
         at a time through a bounded mailbox, answered on a oneshot",
        hops.hops
    );
    println!(
        "  per hop: median batch {:.2} us, slowest batch {:.2} us (the simulation charges \
         one executor cycle per hop: 1,000 us by default, `simulate --cycle-us`)",
        us(hops.median),
        us(hops.worst_batch)
    );
    ExitCode::SUCCESS
}

/// Per-hop wall time over batches of round trips.
pub struct Hops {
    pub hops: u64,
    pub median: Duration,
    pub worst_batch: Duration,
}

/// A request for the echo actor, answered on its oneshot.
struct Ping {
    sequence: u64,
    answer: oneshot::Sender<u64>,
}

/// `batches` batches of `round_trips` round trips each on a runtime of `threads` workers.
pub fn measure(threads: usize, batches: usize, round_trips: u64) -> Hops {
    let runtime = tokio::Config::new().with_worker_threads(threads.max(1));
    tokio::Runner::new(runtime).start(|context| async move {
        let (mailbox, mut inbox) = mpsc::channel::<Ping>(1024);
        context.child("echo").spawn(|_| async move {
            while let Some(ping) = inbox.recv().await {
                // The requester may have gone; an echo has nothing else to do then.
                let _ = ping.answer.send(ping.sequence);
            }
        });
        let mut per_hop = Vec::with_capacity(batches);
        for _ in 0..batches {
            let started = Instant::now();
            for sequence in 0..round_trips {
                let (answer, answered) = oneshot::channel();
                mailbox
                    .send(Ping { sequence, answer })
                    .await
                    .expect("the echo actor runs until the bench ends");
                let echoed = answered.await.expect("the echo actor answers every ping");
                assert_eq!(echoed, sequence, "answers come in order");
            }
            per_hop.push(started.elapsed() / (2 * round_trips) as u32);
        }
        per_hop.sort();
        Hops {
            hops: 2 * round_trips * batches as u64,
            median: per_hop[per_hop.len() / 2],
            worst_batch: per_hop[per_hop.len() - 1],
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hop_is_measured_and_positive() {
        let hops = super::measure(2, 3, 100);
        assert_eq!(hops.hops, 600);
        assert!(hops.median > std::time::Duration::ZERO);
        assert!(hops.worst_batch >= hops.median);
    }
}
