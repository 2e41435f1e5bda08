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
use std::time::{Duration, Instant};

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
