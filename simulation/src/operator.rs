//! Wires one operator's actors on the simulated network, as the node binary will on a real one.

use crate::{
    beacon::DevnetChain,
    counting::Counting,
    devnet::{DevnetBeacon, DevnetSource},
};
use cohort_actors::{committee, executor, runner, scheduler};
use cohort_engine::embedded::EmbeddedEngine;
use cohort_ingress::{
    CommitteeId, SlotClock, keys::ValidatorShare, runner::DutyEvent, signing::ForkInfo,
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
use commonware_macros::select;
use commonware_p2p::simulated::Oracle;
use commonware_parallel::Sequential;
use commonware_runtime::{
    Clock, Handle, Quota, Spawner, Supervisor as _, buffer::paged::CacheRef, deterministic,
};
use commonware_utils::{NZDuration, NZU16, NZU32, NZUsize, channel::mpsc, ordered::Set};
use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

/// Network channels, one per message kind.
pub const CHANNEL_VOTES: u64 = 0;
pub const CHANNEL_CERTIFICATES: u64 = 1;
pub const CHANNEL_RESOLVER: u64 = 2;
pub const CHANNEL_BACKFILL: u64 = 3;
pub const CHANNEL_BLOCKS: u64 = 4;
pub const CHANNEL_PARTIALS: u64 = 5;

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
    pub injected_bug: Option<crate::InjectedBug>,
    /// Where this operator's current life leaves its engine, for the end-of-run comparison.
    pub engines: Engines,
    /// This operator's engine misbehaving, if the run asks for it.
    pub engine_faults: Vec<crate::EngineFault>,
    /// This operator's beacon node answering late or not at all, if the run asks for it.
    pub source_faults: Vec<crate::SourceFault>,
    /// Floods every channel with junk besides its honest work.
    pub noisy: bool,
    /// Sends a conflicting twin of its consensus votes to some peers.
    pub equivocates: bool,
    /// What noisy operators can replay; every receiver feeds it.
    pub taps: crate::byzantine::Taps,
    /// The network's largest message, which a noisy operator sends to test every limit.
    pub max_message_size: usize,
}

/// Every operator's embedded engine, by index (the latest life's).
pub type Engines = Arc<std::sync::Mutex<BTreeMap<usize, EmbeddedEngine<deterministic::Context>>>>;

/// The execution genesis every simulated operator's engine starts from.
pub fn execution_genesis() -> cohort_engine::ExecutionTip {
    cohort_engine::embedded::genesis(0)
}

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
    let register = |channel| {
        let control = control.clone();
        async move {
            let (sender, receiver) = control
                .register(channel, quota)
                .await
                .expect("simulated network refused a channel registration");
            (sender, receiver)
        }
    };
    let votes = register(CHANNEL_VOTES).await;
    let certificates = register(CHANNEL_CERTIFICATES).await;
    let resolver = register(CHANNEL_RESOLVER).await;
    let backfill = register(CHANNEL_BACKFILL).await;
    let blocks = register(CHANNEL_BLOCKS).await;
    let partials = register(CHANNEL_PARTIALS).await;
    let count = |channel, (s, r)| {
        let receiver =
            Counting::new(r, setup.received.clone()).tapped(me.clone(), channel, &setup.taps);
        (s, receiver)
    };
    if setup.noisy
        && let Some(tap) = setup.taps.tap(&me)
    {
        let senders = vec![
            (CHANNEL_VOTES, votes.0.clone()),
            (CHANNEL_CERTIFICATES, certificates.0.clone()),
            (CHANNEL_RESOLVER, resolver.0.clone()),
            (CHANNEL_BACKFILL, backfill.0.clone()),
            (CHANNEL_BLOCKS, blocks.0.clone()),
            (CHANNEL_PARTIALS, partials.0.clone()),
        ];
        let max_size = setup.max_message_size;
        context
            .child("saboteur")
            .spawn(move |context| crate::byzantine::saboteur(context, senders, tap, max_size));
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
    );
    let source = DevnetSource::new(beacon.clone(), setup.chain.clone())
        .with_faults(context.child("beacon_node"), setup.source_faults.clone());

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

    let (duty_sender, mut duty_receiver) = mpsc::unbounded_channel();
    let (runner_actor, runner_mailbox) = runner::init(
        context.child("runner"),
        runner::Config {
            clock: setup.clock,
            source: source.clone(),
            sink: source.clone(),
            committee: committee_mailbox.clone(),
            operators: setup.participants.clone(),
            shares: setup.shares.clone(),
            fork: setup.fork,
            slashing_partition: format!("operator-{}-slashing", setup.index),
            fetch_timeout: Duration::from_secs(2),
            events: Some(duty_sender),
            mailbox_size: 1024,
            fault: setup.fault,
            cpu: Some(setup.cpu.clone()),
        },
    );

    let engine = EmbeddedEngine::init(
        context.child("engine"),
        cohort_engine::embedded::Config {
            partition: format!("operator-{}-engine", setup.index),
            genesis_timestamp: 0,
        },
    )
    .await
    .expect("the simulated engine's storage opens");
    if let Ok(mut engines) = setup.engines.lock() {
        engines.insert(setup.index, engine.clone());
    }

    let (finalized_sender, mut finalized_receiver) = mpsc::unbounded_channel();
    let scheme = Scheme::signer(b"cohort", setup.participants.clone(), setup.key.clone())
        .expect("operator key is in the participant set");
    let vote_scheme = scheme.clone();

    let injected_runner = runner_mailbox.clone();
    // The executor is marshal's reporter; marshal tells it what was already processed.
    let (executor_actor, executor_mailbox) = executor::init(
        context.child("executor"),
        executor::Config {
            runner: runner_mailbox.clone(),
            committee: committee_mailbox.clone(),
            observer: Some(finalized_sender),
            engine: crate::engine_fault::FaultyEngine::new(
                engine,
                context.child("engine_fault"),
                setup.clock,
                setup.engine_faults.clone(),
            ),
            clock: setup.clock,
            operator: setup.index as u32,
            fee_recipient: cohort_engine::Address::repeat_byte(setup.index as u8 + 1),
            execution_genesis: execution_genesis(),
            partition: format!("operator-{}-executor", setup.index),
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
            source,
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
            partition_prefix: format!("operator-{}-marshal", setup.index),
            execution_genesis: execution_genesis(),
            ..Default::default()
        },
        me.clone(),
        scheme.clone(),
        oracle.manager(),
        control.clone(),
        count(CHANNEL_BACKFILL, backfill),
        count(CHANNEL_BLOCKS, blocks),
        executor_mailbox.clone(),
    )
    .await;
    let (proposal_sender, mut proposal_receiver) = mpsc::unbounded_channel();
    let mut application = committee::Application::new(
        committee_mailbox,
        executor_mailbox.clone(),
        setup.clock,
        setup.participants.clone(),
        Some(proposal_sender),
    );
    if setup.injected_bug == Some(crate::InjectedBug::DecideOnVerify) {
        application = application.with_injected_decide_on_verify(injected_runner);
    }
    let inline = Inline::new(
        context.child("inline"),
        application,
        marshal.mailbox.clone(),
        marshal.epocher.clone(),
    );
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: control.clone(),
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: inline,
            strategy: Sequential,
            partition: format!("operator-{}-simplex", setup.index),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(
                cohort_marshal::genesis(execution_genesis()).digest(),
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
    let certificates = count(CHANNEL_CERTIFICATES, certificates);
    let resolver = count(CHANNEL_RESOLVER, resolver);
    let (vote_sender, vote_receiver) = count(CHANNEL_VOTES, votes);
    if setup.equivocates {
        let vote_sender = crate::byzantine::Equivocating::new(vote_sender, vote_scheme);
        handles.push(engine.start((vote_sender, vote_receiver), certificates, resolver));
    } else {
        handles.push(engine.start((vote_sender, vote_receiver), certificates, resolver));
    }
    handles.push(committee_actor.start());
    let (partial_sender, partial_receiver) = count(CHANNEL_PARTIALS, partials);
    handles.push(runner_actor.start(runner::Network::new(partial_sender, partial_receiver)));
    handles.push(executor_actor.start(marshal.processed_height, marshal.mailbox.clone()));
    handles.push(scheduler_actor.start());

    // The beacon node's head events.
    let mut heads = scheduler_mailbox;
    let head_beacon = beacon;
    handles.push(
        context
            .child("beacon_heads")
            .spawn(move |context| async move {
                let mut slot = head_beacon.clock().current_slot(context.current());
                loop {
                    let at = head_beacon.slot_start(slot) + head_beacon.head_delay(slot);
                    context.sleep_until(at).await;
                    let root = head_beacon.attestation_data_for(slot).beacon_block_root;
                    heads.head(slot, root).await;
                    slot += 1;
                }
            }),
    );

    // Forward this operator's observations, tagged with its index.
    let index = setup.index;
    let out = setup.observations;
    handles.push(context.child("observe").spawn(move |_| async move {
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
