//! Wires one operator's actors on the simulated network, as the node binary will on a real one.

use crate::{
    byzantine,
    counting::Counting,
    disk::Disk,
    engine_fault::EngineFault,
    engine_fault::FaultyEngine,
    source_fault::{FaultySource, SourceFault},
    traced::Traced,
};
use cohort_actors::{executor, runner};
use cohort_devnet::{DevnetBeacon, DevnetChain, DevnetSource};
use cohort_engine::embedded::EmbeddedEngine;
use cohort_ingress::{
    CommitteeId, SlotClock, keys::ValidatorShare, runner::DutyEvent, signing::ForkInfo,
};
use cohort_marshal::{PublicKey, Scheme};
pub use cohort_operator::{Channel, execution_genesis};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_macros::select;
use commonware_p2p::simulated::Oracle;
use commonware_runtime::{Handle, Quota, Spawner, Supervisor as _, deterministic};
use commonware_utils::{NZU32, channel::mpsc, ordered::Set};
use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

/// What an operator reports to the simulation's checker.
#[derive(Debug)]
pub enum Observation {
    Finalized(executor::Finalized),
    /// This operator handed a payload to consensus for a slot.
    Built {
        slot: u64,
        payload_hash: cohort_engine::B256,
        outcome: executor::BuildOutcome,
    },
    Duty(DutyEvent),
    Proposed(cohort_marshal::Digest, std::time::SystemTime),
    /// Consensus caught this peer sending conflicting or invalid votes.
    Caught(PublicKey),
    /// What this operator's AVS actor did with a task.
    Task(cohort_actors::avs::TaskEvent),
}

/// This operator's part of the cluster-run AVS.
#[derive(Clone)]
pub struct SimAvs {
    pub key: cohort_avs_crypto::SplitBn254Key,
    pub fault: Option<crate::avs::PerformerFault>,
    pub mailboxes: crate::avs::Mailboxes,
    /// The simulation index of the operator at each share position (events name positions).
    pub indices: Arc<Vec<usize>>,
}

#[derive(Clone)]
pub struct OperatorSetup {
    pub index: usize,
    pub key: PrivateKey,
    pub participants: Set<PublicKey>,
    pub committee: CommitteeId,
    pub clock: SlotClock,
    pub seed: u64,
    pub validators: u64,
    /// When this operator's beacon node sees each head block, if the run fixes it.
    pub head_at: Option<Duration>,
    pub heartbeat: Duration,
    pub leader_timeout: Duration,
    pub observations: mpsc::UnboundedSender<(usize, Observation)>,
    pub received: Arc<AtomicU64>,
    /// This operator's share of every validator.
    pub shares: Arc<BTreeMap<u64, ValidatorShare>>,
    pub chain: DevnetChain,
    pub fork: ForkInfo,
    pub fault: Option<runner::Fault>,
    /// Shared by every operator of the run: the report divides by operators and slots.
    pub cpu: runner::cpu::CpuMeter,
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub injected_bug: Option<crate::InjectedBug>,
    /// Where this operator's current life leaves its engine, for the end-of-run comparison.
    pub engines: Engines,
    pub relays: Relays,
    /// This operator's engine misbehaving, if the run asks for it.
    pub engine_faults: Vec<EngineFault>,
    /// This operator's beacon node answering late or not at all, if the run asks for it.
    pub source_faults: Vec<SourceFault>,
    /// Floods every channel with junk besides its honest work.
    pub noisy: bool,
    /// Sends a conflicting twin of its consensus votes to some peers.
    pub equivocates: bool,
    /// Proposes harmful values whenever it leads.
    pub harmful_leader: bool,
    /// Floods its peers with partial signatures built for decoding work.
    pub floods_partials: bool,
    /// Offers attestation data of its own making at each slot's start.
    pub lies_in_offers: bool,
    /// What noisy operators can replay; every receiver feeds it.
    pub taps: byzantine::Taps,
    /// The network's largest message, which a noisy operator sends to test every limit.
    pub max_message_size: usize,
    /// This operator's disk: every life's storage, and what a lone crash cuts of it.
    pub disk: Disk,
    /// The cluster-run AVS, if the run has one.
    pub avs: Option<SimAvs>,
}

/// Every operator's embedded engine, by index (the latest life's).
pub type Engines = Arc<std::sync::Mutex<BTreeMap<usize, EmbeddedEngine<Traced>>>>;
/// Each operator's transaction relay (of its current life), where the load sends transactions.
pub type Relays = Arc<std::sync::Mutex<BTreeMap<usize, cohort_ingress::transactions::Mailbox>>>;

/// Starts every actor of one operator and returns their handles.
pub async fn start(
    context: deterministic::Context,
    oracle: &Oracle<PublicKey, deterministic::Context>,
    setup: OperatorSetup,
) -> Vec<Handle<()>> {
    use commonware_cryptography::Signer as _;
    let me = setup.key.public_key();
    let control = oracle.control(me.clone());
    let quota = Quota::per_second(NZU32!(100_000));
    let register = |channel: Channel| {
        let control = control.clone();
        async move {
            let (sender, receiver) = control
                .register(channel.id(), quota)
                .await
                .expect("simulated network refused a channel registration");
            (sender, receiver)
        }
    };
    let votes = register(Channel::Votes).await;
    let certificates = register(Channel::Certificates).await;
    let resolver = register(Channel::Resolver).await;
    let backfill = register(Channel::Backfill).await;
    let blocks = register(Channel::Blocks).await;
    let partials = register(Channel::Partials).await;
    let exits = register(Channel::Exits).await;
    let tasks = register(Channel::Tasks).await;
    let offers = register(Channel::Offers).await;
    let transactions = register(Channel::Transactions).await;
    let count = |channel: Channel, (s, r)| {
        let receiver =
            Counting::new(r, setup.received.clone()).tapped(me.clone(), channel.id(), &setup.taps);
        (s, receiver)
    };
    if setup.noisy
        && let Some(tap) = setup.taps.tap(&me)
    {
        let senders = vec![
            (Channel::Votes.id(), votes.0.clone()),
            (Channel::Certificates.id(), certificates.0.clone()),
            (Channel::Resolver.id(), resolver.0.clone()),
            (Channel::Backfill.id(), backfill.0.clone()),
            (Channel::Blocks.id(), blocks.0.clone()),
            (Channel::Partials.id(), partials.0.clone()),
            (Channel::Exits.id(), exits.0.clone()),
            (Channel::Tasks.id(), tasks.0.clone()),
            (Channel::Offers.id(), offers.0.clone()),
            (Channel::Transactions.id(), transactions.0.clone()),
        ];
        let max_size = setup.max_message_size;
        context
            .child("saboteur")
            .spawn(move |context| byzantine::saboteur(context, senders, tap, max_size));
    }

    if setup.lies_in_offers {
        let sender = offers.0.clone();
        let clock = setup.clock;
        context
            .child("lying_offers")
            .spawn(move |context| byzantine::lying_offers(context, clock, sender));
    }

    if setup.floods_partials {
        let sender = partials.0.clone();
        let flood = byzantine::Flood {
            clock: setup.clock,
            validators: setup.validators,
            rate: Channel::Partials.default_rate().get(),
        };
        context
            .child("partial_flood")
            .spawn(move |context| flood.run(context, sender));
    }

    // The beacon node keeps its own time: a skewed operator clock does not move it.
    let beacon_clock = SlotClock {
        skew_ms: 0,
        ..setup.clock
    };
    let beacon = DevnetBeacon::new(
        setup.seed,
        setup.index as u64 + 1,
        setup.validators,
        beacon_clock,
    )
    .with_sync_population(
        setup
            .validators
            .saturating_mul(super::setup::SYNC_POPULATION_FACTOR),
    )
    .with_head_at(setup.head_at);
    let source = FaultySource::new(
        DevnetSource::new(beacon.clone(), setup.chain.clone()),
        beacon_clock,
        context.child("beacon_node"),
        setup.source_faults.clone(),
    );

    // The engine's storage is on the operator's disk too: a lone crash cuts its unsynced writes.
    let engine = EmbeddedEngine::init(
        Traced::operator(context.child("engine"), setup.index, setup.disk.clone()),
        cohort_engine::embedded::Config::devnet(format!("operator-{}-engine", setup.index)),
    )
    .await
    .expect("the simulated engine's storage opens");
    if let Ok(mut engines) = setup.engines.lock() {
        engines.insert(setup.index, engine.clone());
    }
    let engine = FaultyEngine::new(
        engine,
        context.child("engine_fault"),
        setup.clock,
        setup.engine_faults.clone(),
    );

    let (duty_sender, mut duty_receiver) = mpsc::unbounded_channel();
    let (finalized_sender, mut finalized_receiver) = mpsc::unbounded_channel();
    let (proposal_sender, mut proposal_receiver) = mpsc::unbounded_channel();
    let (caught_sender, mut caught_receiver) = mpsc::unbounded_channel();
    let (task_sender, mut task_receiver) = mpsc::unbounded_channel();
    // Held by the forwarder below, so that a run without an AVS never closes its receiver.
    let task_events_open = task_sender.clone();
    let position = setup
        .participants
        .position(&me)
        .expect("every operator is a participant");
    let avs = setup.avs.as_ref().map(|avs| cohort_operator::AvsSetup {
        sharing: avs.key.sharing.clone(),
        share: avs.key.shares[position].clone(),
        operator_address: crate::avs::SIM_OPERATOR_ADDRESS,
        performer: Arc::new(crate::avs::SimPerformer {
            fault: avs.fault,
            context: context.child("performer"),
        }),
        check: Arc::new(crate::avs::check),
        events: Some(task_sender),
    });
    // The cluster's namespaces come from its lock as a node's do; the simulated cluster's lock
    // is its operators and every validator's polynomial.
    let namespace = cluster_identity(&setup.participants, &setup.shares).consensus_namespace();
    let wiring = cohort_operator::Setup {
        index: setup.index,
        key: setup.key.clone(),
        participants: setup.participants.clone(),
        namespace: namespace.clone(),
        committee: setup.committee.clone(),
        clock: setup.clock,
        heartbeat: setup.heartbeat,
        leader_timeout: setup.leader_timeout,
        shares: setup.shares.clone(),
        // One thread: the simulation's results never depend on scheduling.
        crypto_threads: 1,
        fork: setup.fork,
        capella_fork_version: setup.fork.fork_version,
        beacon: source,
        engine,
        execution_genesis: execution_genesis(),
        partition_prefix: format!("operator-{}", setup.index),
        // Every devnet validator is the cluster's, and a run starts at genesis: nothing to
        // protect against (the runner's and the checker's own tests cover the guard).
        doppelganger: cohort_ingress::doppelganger::Guard::off(),
        avs,
        hooks: cohort_operator::Hooks {
            fault: setup.fault,
            cpu: Some(setup.cpu.clone()),
            #[cfg(feature = "test-hooks")]
            inject_decide_on_verify: setup.injected_bug == Some(crate::InjectedBug::DecideOnVerify),
            tamper_proposals: setup.harmful_leader.then(|| {
                byzantine::harmful_leader(
                    setup.seed,
                    setup.index,
                    setup.clock,
                    setup.committee.clone(),
                )
            }),
        },
        observers: cohort_operator::Observers {
            duties: Some(duty_sender),
            executor: Some(finalized_sender),
            proposals: Some(proposal_sender),
            consensus_faults: Some(caught_sender),
        },
    };
    let network = cohort_operator::Network {
        votes: count(Channel::Votes, votes),
        certificates: count(Channel::Certificates, certificates),
        resolver: count(Channel::Resolver, resolver),
        backfill: count(Channel::Backfill, backfill),
        blocks: count(Channel::Blocks, blocks),
        partials: count(Channel::Partials, partials),
        exits: count(Channel::Exits, exits),
        tasks: count(Channel::Tasks, tasks),
        offers: count(Channel::Offers, offers),
        transactions: count(Channel::Transactions, transactions),
        peers: oracle.manager(),
        blocker: control.clone(),
    };
    // Every task from here on logs as this operator. The operator's own tasks take the
    // context; these two are this harness's.
    let context = Traced::operator(context, setup.index, setup.disk.clone());
    let heads_context = context.child("beacon_heads");
    let observe_context = context.child("observe");
    let operator = if setup.equivocates {
        let scheme = Scheme::signer(&namespace, setup.participants.clone(), setup.key.clone())
            .expect("operator key is in the participant set");
        let network = network.map_votes(|sender| byzantine::Equivocating::new(sender, scheme));
        cohort_operator::start(context, wiring, network).await
    } else {
        cohort_operator::start(context, wiring, network).await
    };
    let mut handles = operator.handles;
    if let Ok(mut relays) = setup.relays.lock() {
        relays.insert(setup.index, operator.transactions.clone());
    }
    if let (Some(avs), Some(mailbox)) = (&setup.avs, operator.avs)
        && let Ok(mut mailboxes) = avs.mailboxes.lock()
    {
        mailboxes.insert(setup.index, mailbox);
    }

    // The beacon node's head events.
    handles.push(
        heads_context
            .spawn(move |context| cohort_devnet::head_events(context, beacon, operator.scheduler)),
    );

    // Forward this operator's observations, tagged with its index.
    let index = setup.index;
    let out = setup.observations;
    let indices = setup
        .avs
        .as_ref()
        .map(|avs| avs.indices.clone())
        .unwrap_or_default();
    handles.push(observe_context.spawn(move |_| async move {
        let _task_events_open = task_events_open;
        loop {
            let observation = select! {
                observed = finalized_receiver.recv() => observed.map(|observed| match observed {
                    executor::Observed::Finalized(block) => Observation::Finalized(block),
                    executor::Observed::Built { slot, payload_hash, outcome } => {
                        Observation::Built { slot, payload_hash, outcome }
                    }
                }),
                event = duty_receiver.recv() => event.map(Observation::Duty),
                proposed = proposal_receiver.recv() => {
                    proposed.map(|(digest, at)| Observation::Proposed(digest, at))
                },
                caught = caught_receiver.recv() => caught.map(Observation::Caught),
                event = task_receiver.recv() => event.map(|event| Observation::Task(by_index(&indices, event))),
            };
            let Some(observation) = observation else {
                return;
            };
            if out.send((index, observation)).is_err() {
                return;
            }
        }
    }));
    handles
}

/// An AVS event with the operator it names given by simulation index, as the report shows them.
fn by_index(
    indices: &[usize],
    event: cohort_actors::avs::TaskEvent,
) -> cohort_actors::avs::TaskEvent {
    use cohort_actors::avs::TaskEvent;
    let index = |position: u32| {
        indices
            .get(position as usize)
            .map_or(position, |index| *index as u32)
    };
    match event {
        TaskEvent::BadPartial { task_id, operator } => TaskEvent::BadPartial {
            task_id,
            operator: index(operator),
        },
        TaskEvent::Disagreed { task_id, operator } => TaskEvent::Disagreed {
            task_id,
            operator: index(operator),
        },
        other => other,
    }
}

/// The name every simulated cluster goes by.
const SIMULATED_CLUSTER: &str = "simulation";

/// The simulated cluster's identity, derived as a node derives its own from its lock: the
/// operators, the threshold and every validator's public polynomial.
fn cluster_identity(
    participants: &Set<PublicKey>,
    shares: &BTreeMap<u64, ValidatorShare>,
) -> cohort_operator::cluster::ClusterIdentity {
    use commonware_utils::Faults as _;
    let threshold = commonware_utils::N3f1::quorum(participants.len() as u32);
    let lock_hash = cohort_operator::cluster::LockHash::of(
        SIMULATED_CLUSTER,
        threshold,
        participants,
        shares.iter().map(|(index, share)| (*index, &share.sharing)),
    );
    cohort_operator::cluster::ClusterIdentity::new(SIMULATED_CLUSTER, lock_hash)
}
