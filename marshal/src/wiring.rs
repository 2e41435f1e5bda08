//! Builds one operator's marshal: archives, broadcast buffer, backfill resolver, actor.

use commonware_broadcast::buffered;
use commonware_consensus::{
    Reporter,
    marshal::{self, core::Actor, resolver::p2p as resolver, standard::Standard},
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
use commonware_utils::{NZU16, NZU64, NZUsize};
use rand::{CryptoRng, Rng};
use std::{
    num::{NonZeroU64, NonZeroUsize},
    time::Duration,
};

use cohort_engine::ExecutionTip;

use crate::{Block, BlockCfg, Mailbox, PublicKey, Scheme, Update};

/// One epoch for the life of the cluster: the operator set is static until resharing exists.
pub const EPOCH_LENGTH: NonZeroU64 = NZU64!(u64::MAX / 2);

/// Marshal settings an operator may tune.
#[derive(Clone, Debug)]
pub struct Config {
    /// Prefix of every storage partition marshal uses (unique per operator and chain).
    pub partition_prefix: String,
    pub block_cfg: BlockCfg,
    pub mailbox_size: NonZeroUsize,
    /// How many finalized blocks may be delivered and not yet acknowledged.
    pub max_pending_acks: NonZeroUsize,
    pub fetch_timeout: Duration,
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
            fetch_timeout: Duration::from_secs(2),
            execution_genesis: ExecutionTip::default(),
        }
    }
}

/// A started marshal: its mailbox and the handles of its tasks.
pub struct Marshal {
    pub mailbox: Mailbox,
    pub epocher: FixedEpocher,
    /// Height of the last block the application acknowledged before this start, if any.
    pub processed_height: Option<u64>,
    pub handles: Vec<Handle<()>>,
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
        replay_buffer: NZUsize!(64 * 1024),
        freezer_key_write_buffer: NZUsize!(64 * 1024),
        freezer_value_write_buffer: NZUsize!(64 * 1024),
        ordinal_write_buffer: NZUsize!(64 * 1024),
    }
}

/// Starts marshal for one operator.
///
/// `backfill` and `broadcast` are two dedicated network channels; both must admit
/// [`max_message_size`]. `reporter` receives finalized blocks in order and must acknowledge each.
#[allow(clippy::too_many_arguments)]
pub async fn start<E, P, B, S1, R1, S2, R2>(
    context: E,
    config: Config,
    me: PublicKey,
    scheme: Scheme,
    peers: P,
    blocker: B,
    backfill: (S1, R1),
    broadcast: (S2, R2),
    reporter: impl Reporter<Activity = Update>,
) -> Marshal
where
    E: Spawner + Metrics + Clock + Storage + Rng + CryptoRng,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    S1: Sender<PublicKey = PublicKey>,
    R1: Receiver<PublicKey = PublicKey>,
    S2: Sender<PublicKey = PublicKey>,
    R2: Receiver<PublicKey = PublicKey>,
{
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(64));
    let prefix = config.partition_prefix.clone();

    let resolver_cfg = resolver::Config {
        public_key: me.clone(),
        peer_provider: peers.clone(),
        blocker,
        mailbox_size: config.mailbox_size,
        fetch_timeout: commonware_utils::NonZeroDuration::new(config.fetch_timeout)
            .unwrap_or(commonware_utils::NZDuration!(Duration::from_secs(2))),
        fetch_retry_delay: Duration::from_millis(100),
        priority_requests: false,
        priority_responses: false,
    };
    let resolver = resolver::init(context.child("resolver"), resolver_cfg, backfill);

    let (buffer_engine, buffer) = buffered::Engine::new(
        context.child("buffer"),
        buffered::Config {
            public_key: me,
            mailbox_size: config.mailbox_size,
            deque_size: 16,
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
        view_retention: ViewDelta::new(10),
        prunable_items_per_section: NZU64!(64),
        page_cache,
        replay_buffer: NZUsize!(64 * 1024),
        key_write_buffer: NZUsize!(64 * 1024),
        value_write_buffer: NZUsize!(64 * 1024),
        block_codec_config: config.block_cfg,
        max_repair: NZUsize!(16),
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
    let actor_handle = actor.start(reporter, buffer, resolver);

    Marshal {
        mailbox,
        epocher: epocher(),
        processed_height,
        handles: vec![buffer_handle, actor_handle],
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
