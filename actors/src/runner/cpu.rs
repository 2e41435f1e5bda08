//! Real CPU the runner's cryptography costs, for simulation reports and benchmarks.
//!
//! Simulated time stands still while an actor computes, so it cannot say what signing,
//! decoding and recovering cost a real machine. The harness that wants to know injects a
//! [`CpuMeter`] whose clock reads the thread's CPU time; the runner only adds up what the meter
//! reads and decides nothing on it, so a run replays the same with or without a meter. Without
//! one (the default), nothing is read at all.
//!
//! A meter may also carry a [`CryptoCost`]: what each item of work would cost a machine of
//! interest. The runner then pays what it owes in simulated time (sleeping on its context) before
//! the signatures or submissions that work produced leave, as a busy core would delay them, so
//! a simulation's latencies include the cryptography. The charge counts items, never reads a
//! clock, so runs with it stay deterministic.

use std::{
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// The runner's CPU-bound steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoWork {
    /// This operator's share signing a root.
    Sign,
    /// Decoding peers' partial-signature messages (G2 decompression and subgroup checks).
    Decode,
    /// Lagrange recovery, the check of the recovered signature against the validator's key,
    /// and, when that fails, the check of each partial against its share's key.
    Recover,
}

const WORKS: [CryptoWork; 3] = [CryptoWork::Sign, CryptoWork::Decode, CryptoWork::Recover];

/// What one item of each kind of work costs (on one core of the machine modelled): a share
/// signature, a peer's partial decoded, a key recovered and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CryptoCost {
    pub sign: Duration,
    pub decode: Duration,
    pub recover: Duration,
    /// The cores the machine modelled spreads each batch over, as a real node's parallel
    /// strategy does (`crypto_threads`): a batch of `n` items costs `ceil(n / cores)` items'
    /// time, so a batch smaller than the cores gains nothing.
    pub cores: NonZeroUsize,
}

impl CryptoCost {
    fn of(&self, work: CryptoWork) -> Duration {
        match work {
            CryptoWork::Sign => self.sign,
            CryptoWork::Decode => self.decode,
            CryptoWork::Recover => self.recover,
        }
    }
}

/// A clock of CPU time (not wall time) for the thread running the actor.
pub type CpuClock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// Adds up CPU spent per [`CryptoWork`]; clones share the totals.
#[derive(Clone)]
pub struct CpuMeter {
    clock: CpuClock,
    spent_ns: Arc<[AtomicU64; 3]>,
    cost: Option<CryptoCost>,
    owed_ns: Arc<AtomicU64>,
}

impl CpuMeter {
    pub fn new(clock: CpuClock) -> Self {
        Self {
            clock,
            spent_ns: Arc::new(Default::default()),
            cost: None,
            owed_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// This meter, also charging `cost` per item of work for the runner to pay in time.
    pub fn with_cost(mut self, cost: CryptoCost) -> Self {
        self.cost = Some(cost);
        self
    }

    /// Runs `f` on one batch of `items` items of `work`: measures its CPU as
    /// [`CpuMeter::measure`] does and, with a cost, owes the item's cost for each round of the
    /// batch on the modelled cores.
    pub fn measure_items<R>(&self, work: CryptoWork, items: usize, f: impl FnOnce() -> R) -> R {
        let result = self.measure(work, f);
        if let Some(cost) = self.cost {
            let rounds = items.div_ceil(cost.cores.get());
            let owed = cost
                .of(work)
                .saturating_mul(rounds.try_into().unwrap_or(u32::MAX));
            self.owed_ns
                .fetch_add(owed.as_nanos() as u64, Ordering::Relaxed);
        }
        result
    }

    /// What the work since the last call owes in time, reset to nothing.
    pub fn take_owed(&self) -> Duration {
        Duration::from_nanos(self.owed_ns.swap(0, Ordering::Relaxed))
    }

    /// Runs `f`, charging the CPU it took to `work`.
    pub fn measure<R>(&self, work: CryptoWork, f: impl FnOnce() -> R) -> R {
        let before = (self.clock)();
        let result = f();
        let spent = (self.clock)().saturating_sub(before);
        self.spent_ns[index(work)].fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        result
    }

    /// Everything charged to `work` so far.
    pub fn spent(&self, work: CryptoWork) -> Duration {
        Duration::from_nanos(self.spent_ns[index(work)].load(Ordering::Relaxed))
    }

    /// Everything charged so far.
    pub fn total(&self) -> Duration {
        WORKS.iter().map(|work| self.spent(*work)).sum()
    }
}

fn index(work: CryptoWork) -> usize {
    match work {
        CryptoWork::Sign => 0,
        CryptoWork::Decode => 1,
        CryptoWork::Recover => 2,
    }
}

/// Runs `f` on `items` items under `meter` if there is one.
pub(crate) fn measure_items<R>(
    meter: &Option<CpuMeter>,
    work: CryptoWork,
    items: usize,
    f: impl FnOnce() -> R,
) -> R {
    match meter {
        Some(meter) => meter.measure_items(work, items, f),
        None => f(),
    }
}

/// Runs `f` under `meter` if there is one.
pub(crate) fn measure<R>(meter: &Option<CpuMeter>, work: CryptoWork, f: impl FnOnce() -> R) -> R {
    match meter {
        Some(meter) => meter.measure(work, f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn work_is_charged_to_its_kind_and_shared_by_clones() {
        // A scripted clock: each read advances it by 5 ms.
        let now = Arc::new(Mutex::new(Duration::ZERO));
        let clock_now = now.clone();
        let meter = CpuMeter::new(Arc::new(move || {
            let mut now = clock_now.lock().unwrap();
            *now += Duration::from_millis(5);
            *now
        }));
        let clone = meter.clone();
        assert_eq!(clone.measure(CryptoWork::Sign, || 7), 7);
        meter.measure(CryptoWork::Recover, || ());
        meter.measure(CryptoWork::Recover, || ());
        assert_eq!(meter.spent(CryptoWork::Sign), Duration::from_millis(5));
        assert_eq!(meter.spent(CryptoWork::Decode), Duration::ZERO);
        assert_eq!(meter.spent(CryptoWork::Recover), Duration::from_millis(10));
        assert_eq!(meter.total(), Duration::from_millis(15));
        assert_eq!(meter.take_owed(), Duration::ZERO, "no cost, nothing owed");
    }

    #[test]
    fn a_cost_is_owed_per_item_and_paid_once() {
        let meter = CpuMeter::new(Arc::new(|| Duration::ZERO)).with_cost(CryptoCost {
            sign: Duration::from_micros(100),
            decode: Duration::from_micros(10),
            recover: Duration::from_micros(1),
            cores: NonZeroUsize::MIN,
        });
        meter.measure_items(CryptoWork::Sign, 3, || ());
        meter.measure_items(CryptoWork::Decode, 2, || ());
        meter.clone().measure_items(CryptoWork::Recover, 5, || ());
        meter.measure(CryptoWork::Sign, || ());
        assert_eq!(meter.take_owed(), Duration::from_micros(325));
        assert_eq!(meter.take_owed(), Duration::ZERO);
    }

    #[test]
    fn a_batch_is_spread_over_the_modelled_cores() {
        let meter = CpuMeter::new(Arc::new(|| Duration::ZERO)).with_cost(CryptoCost {
            sign: Duration::from_micros(100),
            decode: Duration::from_micros(10),
            recover: Duration::from_micros(1),
            cores: NonZeroUsize::new(2).expect("two"),
        });
        // Three signatures on two cores take two rounds; one key takes one round however
        // many cores there are; four partials take two.
        meter.measure_items(CryptoWork::Sign, 3, || ());
        meter.measure_items(CryptoWork::Recover, 1, || ());
        meter.measure_items(CryptoWork::Decode, 4, || ());
        assert_eq!(meter.take_owed(), Duration::from_micros(221));
    }
}
