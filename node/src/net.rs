//! The operator's p2p network: commonware's authenticated lookup network over TCP (every peer
//! is a known operator at a known address), one channel per message kind, each with its own
//! rate limit and size limit.
//!
//! The network enforces one size limit for all channels (the largest channel's). Each channel
//! then drops anything above its own limit and blocks the sender: an honest operator never
//! sends more than the limit, so a peer that does is lying or broken.

use crate::config::Config;
use cohort_marshal::PublicKey;
use cohort_operator::Channel;
use commonware_cryptography::{ChaCha20Poly1305, ed25519::PrivateKey};
use commonware_p2p::{
    AddressableManager as _, Blocker as _, Message, Receiver,
    authenticated::lookup::{self, Network, Oracle},
};
use commonware_runtime::{Clock, Quota, Supervisor as _, tokio};
use commonware_stream::{
    SakeCups,
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZUsize, ordered::Map};
use prometheus_client::metrics::{counter::Counter, family::Family};
use std::{
    collections::BTreeMap,
    num::{NonZeroU32, NonZeroUsize},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tracing::warn;

pub type Handshake = SakeCups<PrivateKey, ChaCha20Poly1305>;
pub type NetSender = lookup::Sender<PublicKey, tokio::Context>;
pub type NetReceiver = Limited<lookup::Receiver<PublicKey>>;

/// Operators are few and known: a dropped connection should come back within a second.
const PEER_CONNECTION_COOLDOWN: Duration = Duration::from_millis(500);
/// How often a missing operator is dialled: operators are few, and one missing costs quorum.
const DIAL_FREQUENCY: Duration = Duration::from_millis(500);
/// Pings find a dead connection within seconds rather than the recommended minute: with a
/// few operators, each one missing eats into the cluster's quorum margin.
const PING_FREQUENCY: Duration = Duration::from_secs(5);
/// How long a peer that sent something invalid stays blocked.
const BLOCK_DURATION: Duration = Duration::from_secs(600);
/// Clock difference between two operators a handshake tolerates.
const HANDSHAKE_SYNCHRONY_BOUND: Duration = Duration::from_secs(5);
/// Oldest handshake accepted.
const MAX_HANDSHAKE_AGE: Duration = Duration::from_secs(10);

/// When each peer was last heard from, on any channel: `/health` counts the peers heard
/// within the last few seconds as connected.
#[derive(Clone, Default)]
pub struct Heard(Arc<Mutex<BTreeMap<PublicKey, SystemTime>>>);

impl Heard {
    fn record(&self, peer: &PublicKey, at: SystemTime) {
        if let Ok(mut heard) = self.0.lock() {
            heard.insert(peer.clone(), at);
        }
    }

    /// Peers heard from since `since`.
    pub fn since(&self, since: SystemTime) -> usize {
        self.0
            .lock()
            .map(|heard| heard.values().filter(|at| **at >= since).count())
            .unwrap_or(0)
    }
}

/// A receiver that drops messages over its channel's limit and blocks their sender.
pub struct Limited<R> {
    inner: R,
    channel: Channel,
    max_bytes: usize,
    blocker: Oracle<PublicKey>,
    clock: Arc<tokio::Context>,
    heard: Heard,
    oversized: Family<Vec<(String, String)>, Counter>,
}

impl std::fmt::Debug for Heard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Heard")
    }
}

impl<R> std::fmt::Debug for Limited<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limited")
            .field("channel", &self.channel.name())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl<R: Receiver<PublicKey = PublicKey>> Receiver for Limited<R> {
    type Error = R::Error;
    type PublicKey = PublicKey;

    async fn recv(&mut self) -> Result<Message<PublicKey>, Self::Error> {
        loop {
            let (peer, message) = self.inner.recv().await?;
            self.heard.record(&peer, self.clock.current());
            if message.len() <= self.max_bytes {
                return Ok((peer, message));
            }
            let channel = self.channel.name();
            warn!(
                %peer,
                channel,
                bytes = message.len(),
                limit = self.max_bytes,
                "peer sent a message over the channel's size limit; dropping it and blocking the peer"
            );
            self.oversized
                .get_or_create(&channel_label(self.channel))
                .inc();
            self.blocker.block(peer);
        }
    }

    fn capacity(&self) -> NonZeroUsize {
        self.inner.capacity()
    }
}

/// The operator's network with every channel registered.
pub type OperatorNetwork = cohort_operator::Network<
    NetSender,
    NetSender,
    NetReceiver,
    Oracle<PublicKey>,
    Oracle<PublicKey>,
>;

fn channel_label(channel: Channel) -> Vec<(String, String)> {
    vec![("channel".into(), channel.name().into())]
}

/// The registered channels and what the node keeps of the network.
pub struct Started {
    pub network: OperatorNetwork,
    pub heard: Heard,
    /// Kept for as long as the network runs: dropping it unregisters the metric.
    pub oversized:
        commonware_runtime::telemetry::metrics::Registered<Family<Vec<(String, String)>, Counter>>,
}

/// The network's settings: commonware's recommended (production) settings, with what a
/// cluster of a few known operators needs on top.
///
/// - Operators often sit on private networks (or one host, on a devnet): private addresses
///   are allowed, since every peer is a configured operator anyway.
/// - Inbound handshakes per IP: the recommended one per 5 s would keep operators sharing an
///   address (a devnet, a NAT) apart for many seconds after every restart; one per operator
///   per second is what a whole cluster behind one address needs, and the subnet gets the same.
/// - At most a few handshakes at once per operator: nobody else can complete one, so more
///   only serves a stranger trying to tie the listener up.
/// - A dropped operator is dialled again within a second, and blocked peers stay blocked for
///   [`BLOCK_DURATION`].
pub fn settings(
    handshake: Handshake,
    namespace: &[u8],
    config: &Config,
    validators: usize,
) -> lookup::Config<Handshake> {
    let operators = config.operators.len().max(1);
    let per_second = NonZeroU32::new(operators as u32).unwrap_or(NonZeroU32::MIN);
    let mut p2p = lookup::Config::recommended(
        handshake,
        namespace,
        config.listen,
        NZUsize!(operators),
        config.max_message_size(validators) as u32,
        NZUsize!(cohort_operator::MAILBOX_SIZE),
    );
    p2p.allow_private_ips = true;
    p2p.allowed_handshake_rate_per_ip = Quota::per_second(per_second);
    p2p.allowed_handshake_rate_per_subnet = Quota::per_second(per_second);
    p2p.max_concurrent_handshakes =
        NonZeroU32::new(4 * operators as u32).unwrap_or(NonZeroU32::MIN);
    p2p.peer_connection_cooldown = PEER_CONNECTION_COOLDOWN;
    p2p.dial_frequency = DIAL_FREQUENCY;
    p2p.ping_frequency = PING_FREQUENCY;
    p2p.block_duration = BLOCK_DURATION;
    p2p
}

/// Starts the network and registers every channel, each with its limits from `config` for a
/// cluster running duties for `validators`. The handshake is signed under `namespace`, the
/// cluster's p2p namespace (name and lock hash).
pub fn start(
    context: &tokio::Context,
    config: &Config,
    key: PrivateKey,
    namespace: &[u8],
    validators: usize,
) -> Started {
    use commonware_runtime::Metrics as _;
    let handshake: Handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key,
            synchrony_bound: HANDSHAKE_SYNCHRONY_BOUND,
            max_handshake_age: MAX_HANDSHAKE_AGE,
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let p2p = settings(handshake, namespace, config, validators);
    let (mut network, mut oracle) = Network::new(context.child("p2p"), p2p);
    let peers: Vec<(PublicKey, commonware_p2p::Address)> = config
        .operators
        .iter()
        .map(|(key, address)| (key.clone(), (*address).into()))
        .collect();
    match Map::try_from(peers) {
        Ok(peers) => {
            let _ = oracle.track(0, peers);
        }
        Err(_) => unreachable!("config validation refuses duplicate operator keys"),
    }

    let oversized = Family::<Vec<(String, String)>, Counter>::default();
    let registered = context.register(
        "p2p_oversized_messages",
        "messages dropped for exceeding their channel's size limit, by channel (the sender is blocked)",
        oversized.clone(),
    );
    // Every channel's series exists from the start: a dashboard sees 0, not nothing.
    for channel in Channel::ALL {
        let _ = oversized.get_or_create(&channel_label(channel));
    }

    let heard = Heard::default();
    let clock = Arc::new(context.child("p2p_clock"));
    let operators = config.operators.len() as u32;
    let channels = cohort_operator::Network::from_channels(
        |channel| {
            let limits = config.limits(channel);
            let quota = Quota::per_second(limits.rate_per_second);
            let (sender, receiver) = network.register(channel.id(), quota);
            let receiver = Limited {
                inner: receiver,
                channel,
                max_bytes: limits.max_bytes(operators, validators),
                blocker: oracle.clone(),
                clock: clock.clone(),
                heard: heard.clone(),
                oversized: oversized.clone(),
            };
            (sender, receiver)
        },
        oracle.clone(),
        oracle.clone(),
    );
    // The network runs until the runtime stops; its handle is not needed to stop it.
    network.start();
    Started {
        network: channels,
        heard,
        oversized: registered,
    }
}

/// A key ceremony's network: the same authenticated, encrypted transport as `cohort run`'s,
/// with the ceremony's own handshake namespace (a node of the cluster and a ceremony can never
/// complete a handshake with each other) and one channel, [`cohort_dkg::CHANNEL`].
pub fn start_ceremony(
    context: &tokio::Context,
    listen: std::net::SocketAddr,
    key: PrivateKey,
    namespace: &[u8],
    peers: Vec<(PublicKey, std::net::SocketAddr)>,
    max_message_bytes: usize,
) -> Result<(NetSender, lookup::Receiver<PublicKey>), String> {
    let handshake: Handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key,
            synchrony_bound: HANDSHAKE_SYNCHRONY_BOUND,
            max_handshake_age: MAX_HANDSHAKE_AGE,
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let operators = peers.len().max(1);
    let per_second = NonZeroU32::new(operators as u32).unwrap_or(NonZeroU32::MIN);
    let max = u32::try_from(max_message_bytes)
        .map_err(|_| format!("a ceremony message of {max_message_bytes} bytes is too large"))?;
    let mut p2p = lookup::Config::recommended(
        handshake,
        namespace,
        listen,
        NZUsize!(operators),
        max,
        NZUsize!(cohort_operator::MAILBOX_SIZE),
    );
    p2p.allow_private_ips = true;
    p2p.allowed_handshake_rate_per_ip = Quota::per_second(per_second);
    p2p.allowed_handshake_rate_per_subnet = Quota::per_second(per_second);
    p2p.max_concurrent_handshakes =
        NonZeroU32::new(4 * operators as u32).unwrap_or(NonZeroU32::MIN);
    p2p.peer_connection_cooldown = PEER_CONNECTION_COOLDOWN;
    p2p.dial_frequency = DIAL_FREQUENCY;
    p2p.ping_frequency = PING_FREQUENCY;
    p2p.block_duration = BLOCK_DURATION;
    let (mut network, mut oracle) = Network::new(context.child("dkg_p2p"), p2p);
    let peers: Vec<(PublicKey, commonware_p2p::Address)> = peers
        .into_iter()
        .map(|(key, address)| (key, address.into()))
        .collect();
    let peers = Map::try_from(peers).map_err(|_| "an operator appears twice".to_string())?;
    let _ = oracle.track(0, peers);
    let (sender, receiver) = network.register(
        cohort_dkg::CHANNEL,
        Quota::per_second(NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN)),
    );
    network.start();
    Ok((sender, receiver))
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_utils::NZU32;

    /// The network takes commonware's production settings, not its local-demo ones: a
    /// stranger gets a handshake rate and a number of concurrent handshakes sized to the
    /// cluster (the demo settings allowed 16 per second per IP and 1,024 at once).
    #[test]
    fn p2p_takes_the_recommended_settings_sized_to_the_cluster() {
        let out = std::env::temp_dir().join(format!("cohort-net-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let plan = crate::keys::InitPlan {
            out: out.clone(),
            name: "net".into(),
            operators: 4,
            validators: crate::keys::Validators::Interop(0..1),
            host: "127.0.0.1".into(),
            metrics_host: "127.0.0.1".into(),
            base_port: 19000,
            metrics_base_port: 19100,
            genesis_time: 1_800_000_000,
            slot_seconds: 12,
            slots_per_epoch: 32,
            kdf: cohort_keystore::eip2335::Kdf::light(),
            beacon: crate::config::Beacon {
                seed: 1,
                ..Default::default()
            },
            beacon_nodes: Vec::new(),
            avs: None,
        };
        let configs = crate::keys::init_cluster(&plan).expect("cluster init");
        let config = crate::config::load(&configs[0], Vec::new()).expect("valid");
        let key = cohort_keystore::identity::load(&config.identity_key).expect("identity");
        let handshake: Handshake = Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: key,
                synchrony_bound: HANDSHAKE_SYNCHRONY_BOUND,
                max_handshake_age: MAX_HANDSHAKE_AGE,
                version: sake::Version::V1,
            },
            cups::Version::V1,
        );
        let p2p = settings(handshake, b"cohort/p2p/net/0x00", &config, 1);
        assert_eq!(p2p.namespace, b"cohort/p2p/net/0x00");
        assert_eq!(
            p2p.allowed_handshake_rate_per_ip,
            Quota::per_second(NZU32!(4))
        );
        assert_eq!(
            p2p.allowed_handshake_rate_per_subnet,
            Quota::per_second(NZU32!(4))
        );
        assert_eq!(p2p.max_concurrent_handshakes, NZU32!(16));
        assert!(
            p2p.allow_private_ips,
            "operators on private networks must connect"
        );
        assert_eq!(p2p.block_duration, BLOCK_DURATION);
        let _ = std::fs::remove_dir_all(&out);
    }
}
