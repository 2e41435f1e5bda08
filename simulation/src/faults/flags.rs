//! The `simulate` flags that spell a run's network and faults out, both ways: parsed into a
//! [`SimConfig`]'s faults ([`FaultArgs`]) and printed back from one ([`SimConfig::fault_flags`]).

use super::{ClockSkew, Crash, Fault, Loss, Offline, Partition, PowerCut};
use crate::{SimConfig, engine_fault::EngineFault, source_fault::SourceFault};
use cohort_actors::runner::cpu::CryptoCost;
use std::{num::NonZeroUsize, time::Duration};

/// `SIGN,DECODE,RECOVER` in whole microseconds.
fn parse_crypto_cost(text: &str) -> Result<CryptoCost, String> {
    let costs: Vec<u64> = text
        .split(',')
        .map(|part| part.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|err| format!("crypto-cost-us `{text}`: {err}; expected SIGN,DECODE,RECOVER"))?;
    let [sign, decode, recover] = costs[..] else {
        return Err(format!(
            "crypto-cost-us `{text}`: expected three microsecond costs, SIGN,DECODE,RECOVER"
        ));
    };
    if [sign, decode, recover].iter().any(|us| *us > 1_000_000) {
        return Err(format!(
            "crypto-cost-us `{text}`: at most 1,000,000 us (one second) per item"
        ));
    }
    Ok(CryptoCost {
        sign: Duration::from_micros(sign),
        decode: Duration::from_micros(decode),
        recover: Duration::from_micros(recover),
        cores: NonZeroUsize::MIN,
    })
}

/// The network and fault flags of `cohort simulate`: everything about a run except its seed and
/// cluster shape.
#[derive(clap::Args, Clone, Debug)]
pub struct FaultArgs {
    /// Mean one-way link latency in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Link jitter (standard deviation) in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub jitter_ms: u64,
    /// Probability that a message is delivered (0..=1).
    #[arg(long, default_value_t = 1.0)]
    pub delivery: f64,
    /// Slot length in seconds.
    #[arg(long, default_value_t = 12)]
    pub slot_seconds: u64,
    /// Every operator's beacon node sees each slot's head block this many milliseconds into
    /// the slot, none of them a head behind (default: a seed-drawn time per operator and slot
    /// between 0 and 6 s, and now and then the previous head).
    #[arg(long = "head-at-ms")]
    pub head_at_ms: Option<u64>,
    /// Simulated microseconds the deterministic executor advances after each round of polling
    /// ready tasks: each hop from one task to another costs one round (default 1,000, the
    /// runtime's own; shorter rounds model a real runtime's microsecond hops more closely, at
    /// the price of more rounds per run).
    #[arg(long = "cycle-us", default_value_t = 1000)]
    pub cycle_us: u64,
    /// `SIGN,DECODE,RECOVER`: microseconds one core spends per share signature, per peer
    /// partial decoded and per key recovered and verified (`cohort bench-signing` measures
    /// them; e.g. `161,78,115`), charged in simulated time before what the work produced
    /// leaves (default: the cryptography takes no simulated time).
    #[arg(long = "crypto-cost-us", value_parser = parse_crypto_cost)]
    pub crypto_cost_us: Option<CryptoCost>,
    /// Cores the charged cryptography is spread over, as a node's `crypto_threads` spreads each
    /// batch (default 1): a batch of N items costs ceil(N / cores) items' time.
    #[arg(
        long = "crypto-cores",
        requires = "crypto_cost_us",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub crypto_cores: Option<u16>,
    /// Transfers a wallet on the devnet's funded account signs and offers to the operators'
    /// engines each slot (0: no transaction load).
    #[arg(long, default_value_t = crate::config::DEFAULT_TRANSACTIONS_PER_SLOT)]
    pub transactions_per_slot: u32,
    /// Operator offline: `I` (never starts) or `I@S` (starts at slot S). Repeatable.
    #[arg(long, value_parser = Offline::parse)]
    pub offline: Vec<Offline>,
    /// Operator crash: `I@S` (crashes during slot S, never returns) or `I@S-R` (restarts with
    /// its storage at slot R). Repeatable, one per operator.
    #[arg(long, value_parser = Crash::parse)]
    pub crash: Vec<Crash>,
    /// Byzantine operator `I`: sends well-formed but wrong partial signatures, and offers
    /// attestation data of its own making (another head, a made-up source) at each slot's
    /// start. Repeatable.
    #[arg(long)]
    pub byzantine: Vec<usize>,
    /// Byzantine operator `I` that, besides its honest work, floods every channel with
    /// malformed, oversized, mutated and replayed messages. Repeatable.
    #[arg(long)]
    pub noise: Vec<usize>,
    /// Byzantine operator `I` that equivocates: each consensus vote it sends goes out with a
    /// second, conflicting vote for the same view to some peers. Repeatable.
    #[arg(long)]
    pub equivocate: Vec<usize>,
    /// Byzantine leader `I`: whenever it leads a view it proposes well-formed but harmful
    /// values drawn from the seed (slot jump, wrong value kind, bad source, stale block,
    /// unknown duty, oversized batch). Repeatable.
    #[arg(long = "byzantine-leader")]
    pub byzantine_leader: Vec<usize>,
    /// Byzantine operator `I` that floods its peers with partial-signature messages built for
    /// the most decoding work allowed, at the channel's rate limit. Repeatable.
    #[arg(long = "byzantine-flood")]
    pub byzantine_flood: Vec<usize>,
    /// Network partition `I,J@S-H`: operators I and J cut off from the rest from the start of
    /// slot S until slot H. Repeatable, not overlapping in time.
    #[arg(long, value_parser = Partition::parse)]
    pub partition: Vec<Partition>,
    /// Execution engine fault `I:KIND@S-E`: operator I's engine answers SYNCING (`syncing`),
    /// never answers (`hang`) or calls every payload INVALID (`invalid`, which stops that
    /// operator's executor) from slot S until slot E. Repeatable.
    #[arg(long = "engine-fault", value_parser = EngineFault::parse)]
    pub engine_fault: Vec<EngineFault>,
    /// Clock skew `I:+MS` or `I:-MS`: operator I's clock reads MS milliseconds ahead of or
    /// behind the cluster's. Repeatable.
    #[arg(long = "clock-skew", value_parser = ClockSkew::parse, allow_hyphen_values = true)]
    pub clock_skew: Vec<ClockSkew>,
    /// Duty source fault `I:late=MS@S-E` or `I:absent@S-E`: operator I's beacon node answers
    /// MS milliseconds late, or not at all, from slot S until slot E. Repeatable.
    #[arg(long = "source-fault", value_parser = SourceFault::parse)]
    pub source_fault: Vec<SourceFault>,
    /// Power cut `S-R`: every operator loses power during slot S, with unsynced writes cut
    /// mid-way, and restarts from its storage at slot R.
    #[arg(long = "power-cut", value_parser = PowerCut::parse)]
    pub power_cut: Option<PowerCut>,
    /// Message loss `P@S-H`: every link loses P % of its messages (besides `--delivery`) from
    /// the start of slot S until slot H, then heals. Repeatable, not overlapping in time.
    #[arg(long, value_parser = Loss::parse)]
    pub loss: Vec<Loss>,
    /// A lone crash keeps none of its operator's unsynced writes (the runtime's own
    /// behaviour), instead of a seed-drawn prefix of each blob's with the last one possibly
    /// torn; for comparison.
    #[arg(long = "no-crash-cut")]
    pub no_crash_cut: bool,
    #[command(flatten)]
    pub avs: crate::avs::AvsArgs,
}

impl FaultArgs {
    /// `base` with these faults (in flag order) instead of its own.
    pub fn apply(&self, base: SimConfig) -> SimConfig {
        let faults = (self.offline.iter().copied().map(Fault::Offline))
            .chain(self.crash.iter().copied().map(Fault::Crash))
            .chain(self.byzantine.iter().copied().map(Fault::Byzantine))
            .chain(self.noise.iter().copied().map(Fault::Noise))
            .chain(self.equivocate.iter().copied().map(Fault::Equivocate))
            .chain(
                self.byzantine_leader
                    .iter()
                    .copied()
                    .map(Fault::ByzantineLeader),
            )
            .chain(
                self.byzantine_flood
                    .iter()
                    .copied()
                    .map(Fault::ByzantineFlood),
            )
            .chain(self.partition.iter().cloned().map(Fault::Partition))
            .chain(self.engine_fault.iter().copied().map(Fault::Engine))
            .chain(self.clock_skew.iter().copied().map(Fault::ClockSkew))
            .chain(self.source_fault.iter().copied().map(Fault::Source))
            .chain(self.power_cut.map(Fault::PowerCut))
            .chain(self.loss.iter().copied().map(Fault::Loss))
            .collect();
        SimConfig {
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            delivery: self.delivery,
            slot_duration: Duration::from_secs(self.slot_seconds),
            faults,
            crash_cut: !self.no_crash_cut,
            avs: self.avs.load(),
            head_at: self.head_at_ms.map(Duration::from_millis),
            transactions_per_slot: self.transactions_per_slot,
            cycle: Duration::from_micros(self.cycle_us),
            crypto_cost: self.crypto_cost_us.map(|cost| CryptoCost {
                cores: self
                    .crypto_cores
                    .and_then(|cores| NonZeroUsize::new(cores.into()))
                    .unwrap_or(NonZeroUsize::MIN),
                ..cost
            }),
            ..base
        }
    }

    /// Parses flags as [`SimConfig::fault_flags`] prints them.
    pub fn parse(flags: &str) -> Result<Self, String> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            faults: FaultArgs,
        }
        let words = std::iter::once("faults").chain(flags.split_whitespace());
        <Flags as clap::Parser>::try_parse_from(words)
            .map(|flags| flags.faults)
            .map_err(|err| format!("faults `{flags}`: {}", err.render().to_string().trim()))
    }
}

impl SimConfig {
    /// This run's network and faults as `simulate` flags ([`FaultArgs`] parses them back).
    pub fn fault_flags(&self) -> String {
        let mut flags = vec![
            format!("--latency-ms {}", self.latency.as_millis()),
            format!("--jitter-ms {}", self.jitter.as_millis()),
            format!("--delivery {}", self.delivery),
        ];
        if self.slot_duration != Duration::from_secs(12) {
            flags.push(format!("--slot-seconds {}", self.slot_duration.as_secs()));
        }
        if let Some(at) = self.head_at {
            flags.push(format!("--head-at-ms {}", at.as_millis()));
        }
        if self.cycle != crate::config::DEFAULT_CYCLE {
            flags.push(format!("--cycle-us {}", self.cycle.as_micros()));
        }
        if let Some(cost) = self.crypto_cost {
            flags.push(format!(
                "--crypto-cost-us {},{},{}",
                cost.sign.as_micros(),
                cost.decode.as_micros(),
                cost.recover.as_micros()
            ));
            if cost.cores > NonZeroUsize::MIN {
                flags.push(format!("--crypto-cores {}", cost.cores));
            }
        }
        if self.transactions_per_slot != crate::config::DEFAULT_TRANSACTIONS_PER_SLOT {
            flags.push(format!(
                "--transactions-per-slot {}",
                self.transactions_per_slot
            ));
        }
        let mut faults: Vec<&Fault> = self.faults.iter().collect();
        faults.sort_by_key(|fault| fault.flag_order());
        flags.extend(faults.into_iter().map(Fault::flag));
        if !self.crash_cut {
            flags.push("--no-crash-cut".into());
        }
        if let Some(avs) = &self.avs {
            flags.push(avs.flags());
        }
        flags.join(" ")
    }
}
