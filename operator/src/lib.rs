//! One operator's actors wired together, on whatever runtime and network it is given.
//!
//! The node binary calls this on the tokio runtime and commonware's authenticated network;
//! the simulation calls it on the deterministic runtime and the simulated network, wrapping
//! the channels and the engine with its faults first. One wiring for both is what makes a
//! simulation run say something about the binary operators run.

use cohort_actors::{avs, committee, doppelganger, executor, exits, runner, scheduler};
use cohort_engine::{ExecutionEngine, ExecutionTip};
use cohort_ingress::{
    CommitteeId, DutySink, DutySource, SlotClock, doppelganger::Guard, keys::ValidatorShare,
    runner::DutyEvent, signing::ForkInfo,
};
use cohort_marshal::{PublicKey, Scheme};
use commonware_consensus::{
    Reporters,
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
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage};
use commonware_utils::{NZDuration, NZUsize, channel::mpsc, ordered::Set};
use rand::{CryptoRng, Rng};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

mod channel;
pub mod cluster;
mod consensus_faults;
mod skip_votes;

pub use channel::{Channel, max_message_size};

/// Mailbox size of every actor this wiring starts and of consensus: far more than a slot's
/// messages, so a full mailbox means an actor is stuck, not busy.
pub const MAILBOX_SIZE: usize = 1024;
/// How long one beacon-node call for duties or duty data may take before it is retried.
pub const DUTY_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// A duty that starts this much after its planned time is logged as late.
pub const LATE_DUTY_THRESHOLD: Duration = Duration::from_millis(500);
/// How long one Engine API call may take before it counts as failed.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait between attempts of an engine call that must succeed (a finalized payload).
pub const ENGINE_RETRY_DELAY: Duration = Duration::from_millis(500);

/// How long a leader with no work waits and how long a view waits for its leader, derived
/// from the slot clock in one place so the node and the simulation pace consensus alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// A leader with nothing to propose waits this long before an empty block: one slot, so an
    /// idle cluster makes about one block per slot.
    pub heartbeat: Duration,
    /// A view whose leader proposed nothing times out after this long: past the heartbeat, so
    /// an idle leader's empty block lands before its view times out.
    pub leader_timeout: Duration,
}

/// How much longer than the heartbeat a view waits for its leader.
const LEADER_GRACE: Duration = Duration::from_secs(2);
/// How much longer than the leader timeout a view waits for a notarized block to be certified.
const CERTIFICATION_GRACE: Duration = Duration::from_secs(2);
/// How much longer than the leader timeout a leader may stay silent while a quorum votes before
/// its views are skipped (nullified at once). Must exceed the certification grace.
const SKIP_GRACE: Duration = Duration::from_secs(6);
/// Wait before a timed-out view is announced again.
const VIEW_TIMEOUT_RETRY: Duration = Duration::from_secs(2);
/// How long consensus waits for a peer to serve a missing certificate, and before it asks
/// another.
const CONSENSUS_FETCH_TIMEOUT: Duration = Duration::from_secs(1);
const CONSENSUS_FETCH_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Views of votes consensus keeps behind the finalized one.
const VIEW_RETENTION: u64 = 16;

impl Pacing {
    pub fn of(clock: &SlotClock) -> Self {
        Self {
            heartbeat: clock.slot_duration,
            leader_timeout: clock.slot_duration + LEADER_GRACE,
        }
    }
}

/// The execution genesis every embedded engine of a cluster starts from (the devnet genesis
/// file the repository keeps).
pub fn execution_genesis() -> ExecutionTip {
    cohort_engine::embedded::devnet_genesis()
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
    pub exits: (S, R),
    /// A cluster-run AVS's channel (unused by a cluster that runs none).
    pub tasks: (S, R),
    /// Attestation data offered to the leader.
    pub offers: (S, R),
    /// Signed transactions for the cluster chain.
    pub transactions: (S, R),
    /// Who the peers are (marshal fetches missing blocks from them).
    pub peers: P,
    /// Where consensus and marshal report a peer that misbehaved.
    pub blocker: B,
}

impl<S, R, P, B> Network<S, S, R, P, B> {
    /// The network whose channels `register` gives, asked for in [`Channel::ALL`] order.
    pub fn from_channels(
        mut register: impl FnMut(Channel) -> (S, R),
        peers: P,
        blocker: B,
    ) -> Self {
        Network {
            votes: register(Channel::Votes),
            certificates: register(Channel::Certificates),
            resolver: register(Channel::Resolver),
            backfill: register(Channel::Backfill),
            blocks: register(Channel::Blocks),
            partials: register(Channel::Partials),
            exits: register(Channel::Exits),
            tasks: register(Channel::Tasks),
            offers: register(Channel::Offers),
            transactions: register(Channel::Transactions),
            peers,
            blocker,
        }
    }
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
            exits: self.exits,
            tasks: self.tasks,
            offers: self.offers,
            transactions: self.transactions,
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
    /// Every peer consensus caught sending conflicting or invalid votes, once per report.
    pub consensus_faults: Option<mpsc::UnboundedSender<PublicKey>>,
}

/// A cluster-run AVS on this operator: its share of the cluster's BN254 operator key and its
/// performer.
pub struct AvsSetup {
    pub sharing: cohort_avs_crypto::Bn254Sharing,
    pub share: cohort_avs_crypto::Bn254SecretShare,
    /// The address the cluster is registered under as one AVS operator.
    pub operator_address: [u8; 20],
    pub performer: Arc<dyn avs::Performer>,
    pub check: avs::TaskCheck,
    pub events: Option<mpsc::UnboundedSender<avs::TaskEvent>>,
}

/// Most tasks an operator holds waiting for ordering (its own callers' and those its peers
/// shared): two seconds of a load of 10,000 tasks per second, over the cluster.
pub const MAX_PENDING_TASKS: usize = 20_000;

/// Most tasks an operator tracks at all: with a task kept until shortly after its deadline, a
/// load of 10,000 tasks per second with 24-second deadlines, at about a kilobyte each.
pub const MAX_TRACKED_TASKS: usize = 400_000;

pub struct Setup<Src, X> {
    /// This operator's position in `participants`: its share index and proposer number.
    pub index: usize,
    pub key: PrivateKey,
    /// The cluster's operators in share order.
    pub participants: Set<PublicKey>,
    /// What this cluster's consensus messages are signed under
    /// ([`cluster::ClusterIdentity::consensus_namespace`]): derived from the cluster's name and
    /// lock, so no vote counts in another cluster, or under another lock.
    pub namespace: Vec<u8>,
    pub committee: CommitteeId,
    pub clock: SlotClock,
    /// How long an idle leader waits before an empty block (see [`Pacing`]).
    pub heartbeat: Duration,
    /// How long a view waits for its leader (see [`Pacing`]).
    pub leader_timeout: Duration,
    /// This operator's share of every validator.
    pub shares: Arc<BTreeMap<u64, ValidatorShare>>,
    /// Threads the runner signs, recovers and verifies a step's partials on (one: on the
    /// runner's own thread, as a simulation does).
    pub crypto_threads: usize,
    pub fork: ForkInfo,
    /// The Capella fork version, which voluntary exits are signed under (EIP-7044); a devnet's
    /// one fork version.
    pub capella_fork_version: [u8; 4],
    /// The beacon node: where duties come from and signed objects go.
    pub beacon: Src,
    pub engine: X,
    /// The execution chain's genesis block as `engine` knows it: the cluster's genesis block
    /// names it, so every operator's engine must start from the same one.
    pub execution_genesis: ExecutionTip,
    /// Prefix of every storage partition this operator writes (unique per operator when
    /// operators share one storage, as in a simulation).
    pub partition_prefix: String,
    /// Doppelganger protection: which validators this operator may sign for yet
    /// ([`Guard::off`] for none, as on a devnet whose every validator is the cluster's).
    pub doppelganger: Guard,
    /// The cluster-run AVS, if this cluster runs one.
    pub avs: Option<AvsSetup>,
    pub hooks: Hooks,
    pub observers: Observers,
}

/// What a simulation switches on in an operator to test the cluster around it; all off by
/// default, as in a production node.
#[derive(Default)]
pub struct Hooks {
    /// Makes this operator's runner misbehave (a byzantine operator).
    pub fault: Option<runner::Fault>,
    /// Measures the CPU time the runner's cryptography takes.
    pub cpu: Option<runner::cpu::CpuMeter>,
    /// Rewrites what this operator proposes as leader (a byzantine leader).
    pub tamper_proposals: Option<committee::ProposalTamper>,
    /// A known bug switched on to prove the simulation's invariants catch it (only in builds
    /// with the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    pub inject_decide_on_verify: bool,
}

/// A started operator: its tasks and the mailboxes the embedding process still talks to.
pub struct Operator {
    pub handles: Vec<Handle<()>>,
    pub scheduler: cohort_ingress::scheduler::Mailbox,
    pub runner: cohort_ingress::runner::Mailbox,
    /// Where the operator's exit requests go.
    pub exits: cohort_ingress::exits::Mailbox,
    /// Why the runner's slashing-protection record is unusable, while it is (for `/health`).
    pub slashing: runner::slashing::SlashingStatus,
    /// Where a cluster-run AVS's tasks are submitted, if this cluster runs one.
    pub avs: Option<cohort_ingress::avs::Mailbox>,
    /// Where users' signed transactions for the cluster chain go (a JSON-RPC server).
    pub transactions: cohort_ingress::transactions::Mailbox,
}

/// Starts every actor of one operator.
///
/// Each actor's context is named here, once (`committee`, `runner`, `executor`, `scheduler`,
/// `marshal`, `simplex`): the actors do not name themselves again, so a metric is
/// `<context>_<actor>_<name>` and a task `<context>_<actor>`.
pub async fn start<E, Src, X, VS, S, R, P, B>(
    mut context: E,
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
            mailbox_size: MAILBOX_SIZE,
            participants: setup.participants.clone(),
            check_proposal: {
                let source = setup.beacon.clone();
                Arc::new(move |proposal| source.check_proposal(proposal))
            },
        },
    );

    let slashing_status = runner::slashing::SlashingStatus::default();
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
            slashing_status: slashing_status.clone(),
            fetch_timeout: DUTY_FETCH_TIMEOUT,
            events: setup.observers.duties,
            mailbox_size: MAILBOX_SIZE,
            fault: setup.hooks.fault,
            cpu: setup.hooks.cpu,
            guard: setup.doppelganger.clone(),
            // Batch-verification scalars come from the runtime's RNG (replayable in a
            // simulation, unpredictable on a node).
            crypto: runner::crypto::Crypto::new(
                runner::crypto::Parallel::with_threads(setup.crypto_threads),
                rand::SeedableRng::from_rng(&mut context),
            ),
        },
    );

    let scheme = Scheme::signer(
        &setup.namespace,
        setup.participants.clone(),
        setup.key.clone(),
    )
    .expect("operator key is in the participant set");

    // Named before marshal's: a crash aborts an operator's tasks in the order of this
    // supervision tree, and a simulation replays bit for bit only if that order stays.
    let executor_context = context.child("executor");
    let scheduler_context = context.child("scheduler");

    // Marshal opens first; the executor, its reporter, is built with its mailbox and what it
    // already processed, and marshal starts delivering to it only then.
    let marshal = cohort_marshal::init(
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
    )
    .await;
    let marshal_mailbox = marshal.mailbox.clone();
    // A task record that cannot be opened leaves the AVS off on this operator (logged); its
    // duties go on, and its peers sign tasks without it while they are a threshold.
    let avs = match setup.avs {
        Some(avs_setup) => match avs::init(
            context.child("avs"),
            avs::Config {
                operators: setup.participants.clone(),
                sharing: avs_setup.sharing,
                share: avs_setup.share,
                operator_address: avs_setup.operator_address,
                performer: avs_setup.performer,
                check: avs_setup.check,
                record_partition: format!("{prefix}-tasks"),
                events: avs_setup.events,
                committee: Some(committee_mailbox.clone()),
                mailbox_size: MAILBOX_SIZE,
                max_pending: MAX_PENDING_TASKS,
                max_tracked: MAX_TRACKED_TASKS,
                verify_wait: setup.clock.interval_duration(),
            },
        )
        .await
        {
            Ok(started) => Some(started),
            Err(err) => {
                tracing::error!(%err, "cannot open the AVS task record; this operator runs no AVS tasks until it restarts with a working disk");
                None
            }
        },
        None => None,
    };
    let avs_mailbox = avs.as_ref().map(|(_, mailbox)| mailbox.clone());
    let (executor_actor, executor_mailbox) = executor::init(
        executor_context,
        executor::Config {
            marshal: marshal.mailbox.clone(),
            processed_height: marshal.processed_height,
            runner: runner_mailbox.clone(),
            committee: committee_mailbox.clone(),
            avs: avs_mailbox.clone(),
            observer: setup.observers.executor,
            engine: setup.engine.clone(),
            clock: setup.clock,
            operator: setup.index as u32,
            fee_recipient: cohort_engine::Address::repeat_byte(setup.index as u8 + 1),
            execution_genesis: setup.execution_genesis,
            partition: format!("{prefix}-executor"),
            engine_timeout: ENGINE_TIMEOUT,
            retry_delay: ENGINE_RETRY_DELAY,
            heartbeat: setup.clock.slot_duration,
        },
    );
    let (exits_actor, exits_mailbox) = exits::init(
        context.child("exits"),
        exits::Config {
            clock: setup.clock,
            sink: setup.beacon.clone(),
            operators: setup.participants.clone(),
            shares: setup.shares.clone(),
            capella_fork_version: setup.capella_fork_version,
            genesis_validators_root: setup.fork.genesis_validators_root,
            submit_timeout: DUTY_FETCH_TIMEOUT,
            mailbox_size: MAILBOX_SIZE,
        },
    );
    // Only with protection on, so that a run without it starts the same tasks as before.
    let doppelganger_actor = setup.doppelganger.is_on().then(|| {
        doppelganger::init(
            context.child("doppelganger"),
            doppelganger::Config {
                clock: setup.clock,
                source: setup.beacon.clone(),
                guard: setup.doppelganger.clone(),
                fetch_timeout: DUTY_FETCH_TIMEOUT,
            },
        )
    });
    let (scheduler_actor, scheduler_mailbox) = scheduler::init(
        scheduler_context,
        scheduler::Config {
            clock: setup.clock,
            committee_id: setup.committee.clone(),
            committee: committee_mailbox.clone(),
            source: setup.beacon,
            runner: runner_mailbox.clone(),
            fetch_timeout: DUTY_FETCH_TIMEOUT,
            late_threshold: LATE_DUTY_THRESHOLD,
            mailbox_size: MAILBOX_SIZE,
            executor: Some(executor_mailbox.clone()),
        },
    );
    let mut handles = marshal.start(executor_mailbox.clone());

    let skip_votes = skip_votes::SkipVotes::new(committee_mailbox.clone());
    let mut application = committee::Application::new(
        committee_mailbox,
        executor_mailbox,
        setup.clock,
        setup.participants.clone(),
        setup.observers.proposals,
    );
    if let Some(avs) = &avs_mailbox {
        application = application.with_avs(avs.clone());
    }
    if let Some(tamper) = setup.hooks.tamper_proposals {
        application = application.with_proposal_tamper(tamper);
    }
    #[cfg(feature = "test-hooks")]
    if setup.hooks.inject_decide_on_verify {
        application = application.with_injected_decide_on_verify(runner_mailbox.clone());
    }
    let inline = Inline::new(
        context.child("inline"),
        application,
        marshal_mailbox,
        cohort_marshal::epocher(),
    );
    let consensus = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker: consensus_faults::Reporting::new(
                &context.child("consensus"),
                network.blocker,
                setup.participants.iter().cloned().collect(),
                setup.observers.consensus_faults,
            ),
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: Reporters::from((inline, skip_votes)),
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: NZUsize!(MAILBOX_SIZE),
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(
                cohort_marshal::genesis(setup.execution_genesis).digest(),
            ),
            replay_buffer: cohort_marshal::IO_BUFFER,
            write_buffer: cohort_marshal::IO_BUFFER,
            page_cache: cohort_marshal::page_cache(),
            leader_timeout: setup.leader_timeout,
            certification_timeout: setup.leader_timeout + CERTIFICATION_GRACE,
            timeout_retry: VIEW_TIMEOUT_RETRY,
            view_retention: ViewDelta::new(VIEW_RETENTION),
            // A leader silent for longer than an idle gap between blocks (one slot) while a
            // quorum votes is down: its views are nullified at once instead of each costing a
            // full leader timeout.
            skip: SkipPolicy::Enabled {
                timeout: setup.leader_timeout + SKIP_GRACE,
                budget: SkipBudget::Participants,
            },
            fetch_timeout: NZDuration!(CONSENSUS_FETCH_TIMEOUT),
            fetch_retry_delay: CONSENSUS_FETCH_RETRY_DELAY,
            forward: ForwardPolicy::SilentVoters,
            track_historical_votes: false,
        },
    );

    handles.push(consensus.start(network.votes, network.certificates, network.resolver));
    let (offer_sender, offer_receiver) = network.offers;
    handles.push(committee_actor.start(offer_sender, offer_receiver));
    let (partial_sender, partial_receiver) = network.partials;
    handles.push(
        runner_actor
            .with_scheduler(scheduler_mailbox.clone())
            .start(runner::Network::new(partial_sender, partial_receiver)),
    );
    handles.push(executor_actor.start());
    handles.push(scheduler_actor.start());
    if let Some(actor) = doppelganger_actor {
        handles.push(actor.start());
    }
    let (relay_actor, relay_mailbox) = cohort_actors::relay::init(
        context.child("relay"),
        cohort_actors::relay::Config {
            engine: setup.engine,
            mailbox_size: MAILBOX_SIZE,
        },
    );
    let (transaction_sender, transaction_receiver) = network.transactions;
    handles.push(relay_actor.start(transaction_sender, transaction_receiver));
    let (exit_sender, exit_receiver) = network.exits;
    handles.push(exits_actor.start(setup.index as u32, exit_sender, exit_receiver));
    if let Some((avs_actor, _)) = avs {
        let (task_sender, task_receiver) = network.tasks;
        handles.push(avs_actor.start(task_sender, task_receiver));
    }
    Operator {
        handles,
        scheduler: scheduler_mailbox,
        runner: runner_mailbox,
        exits: exits_mailbox,
        slashing: slashing_status,
        avs: avs_mailbox,
        transactions: relay_mailbox,
    }
}
