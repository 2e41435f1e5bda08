//! One operator's actors wired together, on whatever runtime and network it is given.
//!
//! The node binary calls this on the tokio runtime and commonware's authenticated network;
//! the simulation calls it on the deterministic runtime and the simulated network, wrapping
//! the channels and the engine with its faults first. One wiring for both is what makes a
//! simulation run say something about the binary operators run.

use cohort_actors::{committee, executor, runner, scheduler};
use cohort_engine::{ExecutionEngine, ExecutionTip};
use cohort_ingress::{
    CommitteeId, DutySink, DutySource, SlotClock, keys::ValidatorShare, runner::DutyEvent,
    signing::ForkInfo,
};
use cohort_marshal::{PublicKey, Scheme};
use commonware_consensus::{
    marshal::standard::Inline,
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{Digestible, Sha256, ed25519::PrivateKey};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_utils::{NZDuration, NZU16, NZUsize, channel::mpsc, ordered::Set};
use rand::{CryptoRng, Rng};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// Network channels, one per message kind: each has its own rate and size limit.
pub const CHANNEL_VOTES: u64 = 0;
pub const CHANNEL_CERTIFICATES: u64 = 1;
pub const CHANNEL_RESOLVER: u64 = 2;
pub const CHANNEL_BACKFILL: u64 = 3;
pub const CHANNEL_BLOCKS: u64 = 4;
pub const CHANNEL_PARTIALS: u64 = 5;

/// Every channel, in registration order.
pub const CHANNELS: [u64; 6] = [
    CHANNEL_VOTES,
    CHANNEL_CERTIFICATES,
    CHANNEL_RESOLVER,
    CHANNEL_BACKFILL,
    CHANNEL_BLOCKS,
    CHANNEL_PARTIALS,
];

/// The name a channel has in logs, metrics and config.
pub fn channel_name(channel: u64) -> &'static str {
    match channel {
        CHANNEL_VOTES => "votes",
        CHANNEL_CERTIFICATES => "certificates",
        CHANNEL_RESOLVER => "resolver",
        CHANNEL_BACKFILL => "backfill",
        CHANNEL_BLOCKS => "blocks",
        CHANNEL_PARTIALS => "partials",
        _ => "unknown",
    }
}

/// The largest message an honest operator sends on `channel`, for a cluster of `operators`
/// running duties for `validators`: anything larger is a peer misbehaving.
pub fn channel_max_size(channel: u64, operators: u32, validators: usize) -> usize {
    let block_cfg = cohort_marshal::BlockCfg::default();
    let consensus = simplex::max_payload_size::<Scheme, cohort_marshal::Digest>(operators);
    let blocks = cohort_marshal::max_message_size(operators, &block_cfg);
    let partials = cohort_ingress::partial::PartialSignatures::max_encode_size(
        runner::max_partials_per_message(validators),
    );
    match channel {
        CHANNEL_VOTES | CHANNEL_CERTIFICATES | CHANNEL_RESOLVER => consensus,
        CHANNEL_BACKFILL | CHANNEL_BLOCKS => blocks,
        CHANNEL_PARTIALS => partials,
        _ => 0,
    }
}

/// The largest message on any channel: the network's own limit.
pub fn max_message_size(operators: u32, validators: usize) -> usize {
    CHANNELS
        .iter()
        .map(|channel| channel_max_size(*channel, operators, validators))
        .max()
        .unwrap_or(0)
}

/// The execution genesis every embedded engine of a cluster starts from.
pub fn execution_genesis() -> ExecutionTip {
    cohort_engine::embedded::genesis(0)
}

/// The channels one operator talks on, already registered, and how it names and blocks peers.
pub struct Network<VS, S, R, P, B> {
    /// Votes have their own sender type so a simulation can make an operator equivocate.
    pub votes: (VS, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub backfill: (S, R),
    pub blocks: (S, R),
    pub partials: (S, R),
    /// Who the peers are (marshal fetches missing blocks from them).
    pub peers: P,
    /// Where consensus and marshal report a peer that misbehaved.
    pub blocker: B,
}

impl<VS, S, R, P, B> Network<VS, S, R, P, B> {
    /// The same network with the vote sender wrapped (a simulation's equivocator).
    pub fn map_votes<W>(self, wrap: impl FnOnce(VS) -> W) -> Network<W, S, R, P, B> {
        let (sender, receiver) = self.votes;
        Network {
            votes: (wrap(sender), receiver),
            certificates: self.certificates,
            resolver: self.resolver,
            backfill: self.backfill,
            blocks: self.blocks,
            partials: self.partials,
            peers: self.peers,
            blocker: self.blocker,
        }
    }
}

/// Where an operator reports what it does, for a checker or a dashboard.
#[derive(Default)]
pub struct Observers {
    pub duties: Option<mpsc::UnboundedSender<DutyEvent>>,
    pub executor: Option<mpsc::UnboundedSender<executor::Observed>>,
    pub proposals: Option<committee::ProposalObserver>,
}

pub struct Setup<Src, X> {
    /// This operator's position in `participants`: its share index and proposer number.
    pub index: usize,
    pub key: PrivateKey,
    /// The cluster's operators in share order.
    pub participants: Set<PublicKey>,
    pub committee: CommitteeId,
    pub clock: SlotClock,
    /// How often the committee re-proposes a waiting value and the executor repeats forkchoice.
    pub heartbeat: Duration,
    pub leader_timeout: Duration,
    /// This operator's share of every validator.
    pub shares: Arc<BTreeMap<u64, ValidatorShare>>,
    pub fork: ForkInfo,
    /// The beacon node: where duties come from and signed objects go.
    pub beacon: Src,
    pub engine: X,
    /// The execution chain's genesis block as `engine` knows it: the cluster's genesis block
    /// names it, so every operator's engine must start from the same one.
    pub execution_genesis: ExecutionTip,
    /// Prefix of every storage partition this operator writes (unique per operator when
    /// operators share one storage, as in a simulation).
    pub partition_prefix: String,
    pub fault: Option<runner::Fault>,
    pub cpu: Option<runner::cpu::CpuMeter>,
    /// A known bug switched on to prove the simulation's invariants catch it.
    pub inject_decide_on_verify: bool,
    pub observers: Observers,
}

/// A started operator: its tasks and the mailboxes the embedding process still talks to.
pub struct Operator {
    pub handles: Vec<Handle<()>>,
    pub scheduler: cohort_ingress::scheduler::Mailbox,
    pub runner: cohort_ingress::runner::Mailbox,
}

/// Starts every actor of one operator.
pub async fn start<E, Src, X, VS, S, R, P, B>(
    context: E,
    setup: Setup<Src, X>,
    network: Network<VS, S, R, P, B>,
) -> Operator
where
    E: Spawner + Metrics + Clock + Storage + Rng + CryptoRng,
    Src: DutySource + DutySink + Clone,
    X: ExecutionEngine,
    VS: Sender<PublicKey = PublicKey>,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey> + Clone,
{
    use commonware_cryptography::Signer as _;
    let me = setup.key.public_key();
    let prefix = &setup.partition_prefix;

    // Committee first: the runner and the application need its mailbox.
    let (committee_actor, committee_mailbox) = committee::init(
        context.child("committee"),
        committee::Config {
            clock: setup.clock,
            committee: setup.committee.clone(),
            heartbeat: setup.heartbeat,
            verify_grace: setup.clock.interval_duration(),
            mailbox_size: 1024,
        },
    );

    let (runner_actor, runner_mailbox) = runner::init(
        context.child("runner"),
        runner::Config {
            clock: setup.clock,
            source: setup.beacon.clone(),
            sink: setup.beacon.clone(),
            committee: committee_mailbox.clone(),
            operators: setup.participants.clone(),
            shares: setup.shares.clone(),
            fork: setup.fork,
            slashing_partition: format!("{prefix}-slashing"),
            fetch_timeout: Duration::from_secs(2),
            events: setup.observers.duties,
            mailbox_size: 1024,
            fault: setup.fault,
            cpu: setup.cpu,
        },
    );

    let scheme = Scheme::signer(b"cohort", setup.participants.clone(), setup.key.clone())
        .expect("operator key is in the participant set");

    // The executor is marshal's reporter; marshal tells it what was already processed.
    let (executor_actor, executor_mailbox) = executor::init(
        context.child("executor"),
        executor::Config {
            runner: runner_mailbox.clone(),
            committee: committee_mailbox.clone(),
            observer: setup.observers.executor,
            engine: setup.engine,
            clock: setup.clock,
            operator: setup.index as u32,
            fee_recipient: cohort_engine::Address::repeat_byte(setup.index as u8 + 1),
            execution_genesis: setup.execution_genesis,
            partition: format!("{prefix}-executor"),
            engine_timeout: Duration::from_secs(2),
            retry_delay: Duration::from_millis(500),
            heartbeat: setup.clock.slot_duration,
        },
    );
    let (scheduler_actor, scheduler_mailbox) = scheduler::init(
        context.child("scheduler"),
        scheduler::Config {
            clock: setup.clock,
            committee_id: setup.committee.clone(),
            committee: committee_mailbox.clone(),
            source: setup.beacon,
            runner: runner_mailbox.clone(),
            fetch_timeout: Duration::from_secs(2),
            late_threshold: Duration::from_millis(500),
            mailbox_size: 1024,
            executor: Some(executor_mailbox.clone()),
        },
    );

    let marshal = cohort_marshal::start(
        context.child("marshal"),
        cohort_marshal::Config {
            partition_prefix: format!("{prefix}-marshal"),
            execution_genesis: setup.execution_genesis,
            ..Default::default()
        },
        me,
        scheme.clone(),
        network.peers,
        network.blocker.clone(),
        network.backfill,
        network.blocks,
        executor_mailbox.clone(),
    )
    .await;
    let mut application = committee::Application::new(
        committee_mailbox,
        executor_mailbox.clone(),
        setup.clock,
        setup.participants.clone(),
        setup.observers.proposals,
    );
    if setup.inject_decide_on_verify {
        application = application.with_injected_decide_on_verify(runner_mailbox.clone());
    }
    let inline = Inline::new(
        context.child("inline"),
        application,
        marshal.mailbox.clone(),
        marshal.epocher.clone(),
    );
    let consensus = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: network.blocker,
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: inline,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(
                cohort_marshal::genesis(setup.execution_genesis).digest(),
            ),
            replay_buffer: NZUsize!(64 * 1024),
            write_buffer: NZUsize!(64 * 1024),
            page_cache: CacheRef::new(NZU16!(4096), NZUsize!(64)),
            leader_timeout: setup.leader_timeout,
            certification_timeout: setup.leader_timeout + Duration::from_secs(2),
            timeout_retry: Duration::from_secs(2),
            view_retention: ViewDelta::new(16),
            // A leader silent for longer than an idle gap between blocks (one slot) while a
            // quorum votes is down: its views are nullified at once instead of each costing a
            // full leader timeout. Must exceed the certification timeout.
            skip: SkipPolicy::Enabled {
                timeout: setup.leader_timeout + Duration::from_secs(6),
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::SilentVoters,
            track_historical_votes: false,
        },
    );

    let mut handles = marshal.handles;
    handles.push(consensus.start(network.votes, network.certificates, network.resolver));
    handles.push(committee_actor.start());
    let (partial_sender, partial_receiver) = network.partials;
    handles.push(runner_actor.start(runner::Network::new(partial_sender, partial_receiver)));
    handles.push(executor_actor.start(marshal.processed_height, marshal.mailbox));
    handles.push(scheduler_actor.start());
    Operator {
        handles,
        scheduler: scheduler_mailbox,
        runner: runner_mailbox,
    }
}
