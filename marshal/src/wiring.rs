//! Builds one operator's marshal: archives, broadcast buffer, backfill resolver, actor.

use commonware_broadcast::buffered;
use commonware_consensus::{
    Reporter,
    marshal::{
        self,
        core::Actor,
        resolver::{handler::Receiver as HandlerReceiver, p2p as resolver},
        standard::Standard,
    },
    simplex::types::Finalization,
    types::{Epoch, FixedEpocher, ViewDelta},
};
use commonware_cryptography::{
    Digested,
    certificate::{ConstantProvider, Verifier as _},
};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::archive::immutable;
use commonware_utils::{NZDuration, NZU16, NZU64, NZUsize, NonZeroDuration};
use rand::{CryptoRng, Rng};
use std::{
    num::{NonZeroU16, NonZeroU64, NonZeroUsize},
    sync::Arc,
    time::Duration,
};

use cohort_engine::ExecutionTip;

use crate::{Block, BlockCfg, Digest, Mailbox, PublicKey, Scheme, Update};

/// One epoch for the life of the cluster: the operator set is static until resharing exists.
pub const EPOCH_LENGTH: NonZeroU64 = NZU64!(u64::MAX / 2);

/// Bytes a journal reads or writes per storage call when it replays or appends.
pub const IO_BUFFER: NonZeroUsize = NZUsize!(64 * 1024);
/// Page size and page count of an archive's or journal's read cache.
const PAGE_SIZE: NonZeroU16 = NZU16!(4096);
const PAGE_CACHE_PAGES: NonZeroUsize = NZUsize!(64);
/// Wait before asking another peer for a block the previous one did not serve.
const FETCH_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Blocks the broadcast buffer keeps per peer: a few slots' worth of proposals.
const BROADCAST_DEQUE: usize = 16;
/// Views marshal keeps unfinalized blocks for after the application processed a later one.
const VIEW_RETENTION: u64 = 10;
/// Gaps in the finalized chain repaired at once after a restart.
const MAX_REPAIR: NonZeroUsize = NZUsize!(16);

/// A fresh read cache for one storage user; sized as every cohort journal's is.
pub fn page_cache() -> CacheRef {
    CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES)
}

/// Marshal settings an operator may tune.
#[derive(Clone, Debug)]
pub struct Config {
    /// Prefix of every storage partition marshal uses (unique per operator and chain).
    pub partition_prefix: String,
    pub block_cfg: BlockCfg,
    pub mailbox_size: NonZeroUsize,
    /// How many finalized blocks may be delivered and not yet acknowledged.
    pub max_pending_acks: NonZeroUsize,
    /// How long one peer has to serve a block before marshal asks another.
    pub fetch_timeout: NonZeroDuration,
    /// The execution genesis block the cluster's genesis block names: every operator's
    /// engine must start from it.
    pub execution_genesis: ExecutionTip,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            partition_prefix: "cohort-marshal".into(),
            block_cfg: BlockCfg::default(),
            mailbox_size: NZUsize!(1024),
            max_pending_acks: NZUsize!(16),
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            execution_genesis: ExecutionTip::default(),
        }
    }
}

/// Marshal's actor as this crate builds it.
type MarshalActor<E> = Actor<
    E,
    Standard<Block>,
    ConstantProvider<Scheme, Epoch>,
    immutable::Archive<E, Digest, Finalization<Scheme, Digest>>,
    immutable::Archive<E, Digest, Arc<Block>>,
    FixedEpocher,
    Sequential,
>;

/// Marshal opened from storage but not yet delivering. Its mailbox and processed height exist
/// before it runs, so the application it reports to (the executor) can be built with them and
/// then handed to [`Marshal::start`] as its reporter: the wiring goes one way.
pub struct Marshal<E: Spawner + Metrics + Clock + Storage + Rng + CryptoRng> {
    pub mailbox: Mailbox,
    /// Height of the last block the application acknowledged before this start, if any.
    pub processed_height: Option<u64>,
    actor: MarshalActor<E>,
    buffer: buffered::Mailbox<PublicKey, Block>,
    resolver: (
        HandlerReceiver<Digest>,
        resolver::Mailbox<Digest, PublicKey>,
    ),
    buffer_handle: Handle<()>,
}

impl<E: Spawner + Metrics + Clock + Storage + Rng + CryptoRng> Marshal<E> {
    /// Starts delivery: `reporter` receives finalized blocks in order and must acknowledge each.
    /// Returns the handles of marshal's tasks.
    pub fn start(self, reporter: impl Reporter<Activity = Update>) -> Vec<Handle<()>> {
        let actor_handle = self.actor.start(reporter, self.buffer, self.resolver);
        vec![self.buffer_handle, actor_handle]
    }
}

/// The epocher every operator must share.
pub fn epocher() -> FixedEpocher {
    FixedEpocher::new(EPOCH_LENGTH)
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 64,
        freezer_table_resize_frequency: 10,
        freezer_table_resize_chunk_size: 10,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(1024),
        codec_config,
        replay_buffer: IO_BUFFER,
        freezer_key_write_buffer: IO_BUFFER,
        freezer_value_write_buffer: IO_BUFFER,
        ordinal_write_buffer: IO_BUFFER,
    }
}

/// Opens marshal for one operator: its archives, broadcast buffer and backfill resolver.
///
/// `backfill` and `broadcast` are two dedicated network channels; both must admit
/// [`max_message_size`]. Nothing is delivered until [`Marshal::start`].
#[allow(clippy::too_many_arguments)]
pub async fn init<E, P, B, S1, R1, S2, R2>(
    context: E,
    config: Config,
    me: PublicKey,
    scheme: Scheme,
    peers: P,
    blocker: B,
    backfill: (S1, R1),
    broadcast: (S2, R2),
) -> Marshal<E>
where
    E: Spawner + Metrics + Clock + Storage + Rng + CryptoRng,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    S1: Sender<PublicKey = PublicKey>,
    R1: Receiver<PublicKey = PublicKey>,
    S2: Sender<PublicKey = PublicKey>,
    R2: Receiver<PublicKey = PublicKey>,
{
    let page_cache = page_cache();
    let prefix = config.partition_prefix.clone();

    let resolver_cfg = resolver::Config {
        public_key: me.clone(),
        peer_provider: peers.clone(),
        blocker,
        mailbox_size: config.mailbox_size,
        fetch_timeout: config.fetch_timeout,
        fetch_retry_delay: FETCH_RETRY_DELAY,
        priority_requests: false,
        priority_responses: false,
    };
    let resolver = resolver::init(context.child("resolver"), resolver_cfg, backfill);

    let (buffer_engine, buffer) = buffered::Engine::new(
        context.child("buffer"),
        buffered::Config {
            public_key: me,
            mailbox_size: config.mailbox_size,
            deque_size: BROADCAST_DEQUE,
            priority: false,
            codec_config: config.block_cfg,
            peer_provider: peers,
            strategy: Sequential,
        },
    );
    let buffer_handle = buffer_engine.start(broadcast);

    let finalizations_by_height = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations",
            &page_cache,
            Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .expect("marshal: cannot open the finalizations archive; the data directory is unusable");
    let finalized_blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&prefix, "blocks", &page_cache, config.block_cfg),
    )
    .await
    .expect("marshal: cannot open the finalized blocks archive; the data directory is unusable");

    let marshal_cfg = marshal::Config {
        provider: ConstantProvider::<Scheme, Epoch>::new(scheme),
        epocher: epocher(),
        start: marshal::Start::Genesis(genesis(config.execution_genesis)),
        partition_prefix: prefix,
        mailbox_size: config.mailbox_size,
        view_retention: ViewDelta::new(VIEW_RETENTION),
        prunable_items_per_section: NZU64!(64),
        page_cache,
        replay_buffer: IO_BUFFER,
        key_write_buffer: IO_BUFFER,
        value_write_buffer: IO_BUFFER,
        block_codec_config: config.block_cfg,
        max_repair: MAX_REPAIR,
        max_pending_acks: config.max_pending_acks,
        strategy: Sequential,
    };
    let (actor, mailbox, floor) = Actor::<_, Standard<Block>, _, _, _, _, _>::init(
        context.child("actor"),
        finalizations_by_height,
        finalized_blocks,
        marshal_cfg,
    )
    .await;
    let processed_height = floor.processed().map(|p| p.height().get());

    Marshal {
        mailbox,
        processed_height,
        actor,
        buffer,
        resolver,
        buffer_handle,
    }
}

/// Largest message marshal sends on its channels, for a cluster of `operators`.
pub fn max_message_size(operators: u32, block_cfg: &BlockCfg) -> usize {
    marshal::max_payload_size::<Standard<Block>, Scheme>(operators, block_cfg)
}

/// The genesis block as marshal holds it (with its digest), on the execution genesis `execution`.
pub fn genesis(execution: ExecutionTip) -> Digested<Block> {
    let block = Block::genesis(execution);
    let digest = commonware_cryptography::Digestible::digest(&block);
    Digested::precomputed(block, digest)
}
