//! The p2p channels an operator talks on: one per message kind, so each kind gets its own rate
//! and size limit and a flood of one cannot starve another.
//!
//! Everything that differs per channel (its wire id, its name in config and metrics, the
//! largest message an honest operator sends on it, its default rate) is a method here, so a new
//! channel is one new variant and the compiler points at every place that must know it.

use cohort_actors::runner;
use cohort_marshal::Scheme;
use commonware_consensus::simplex;
use commonware_utils::NZU32;
use std::{fmt, num::NonZeroU32};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Consensus votes (notarize, nullify, finalize).
    Votes,
    /// Consensus certificates (notarizations, nullifications, finalizations).
    Certificates,
    /// Consensus fetching certificates it missed.
    Resolver,
    /// Marshal fetching finalized blocks it missed.
    Backfill,
    /// Marshal broadcasting proposed blocks.
    Blocks,
    /// The runners' partial signatures.
    Partials,
    /// Operators' partial signatures over voluntary exits their operators asked for.
    Exits,
    /// A cluster-run AVS's tasks, performer reports and partial signatures.
    Tasks,
    /// Each operator's attestation data for its slot, offered to whoever leads (see
    /// [`cohort_ingress::committee::ATTESTATION_OFFER_SIZE`]).
    Offers,
    /// Signed transactions for the cluster chain, sent once by the operator a user gave them to.
    Transactions,
}

impl Channel {
    /// Every channel, in registration order.
    pub const ALL: [Channel; 10] = [
        Channel::Votes,
        Channel::Certificates,
        Channel::Resolver,
        Channel::Backfill,
        Channel::Blocks,
        Channel::Partials,
        Channel::Exits,
        Channel::Tasks,
        Channel::Offers,
        Channel::Transactions,
    ];

    /// The id peers know the channel by on the wire: every operator must agree on it.
    pub const fn id(self) -> u64 {
        match self {
            Channel::Votes => 0,
            Channel::Certificates => 1,
            Channel::Resolver => 2,
            Channel::Backfill => 3,
            Channel::Blocks => 4,
            Channel::Partials => 5,
            Channel::Exits => 6,
            Channel::Tasks => 7,
            Channel::Offers => 8,
            Channel::Transactions => 9,
        }
    }

    /// The name the channel has in logs, metrics and config.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Votes => "votes",
            Channel::Certificates => "certificates",
            Channel::Resolver => "resolver",
            Channel::Backfill => "backfill",
            Channel::Blocks => "blocks",
            Channel::Partials => "partials",
            Channel::Exits => "exits",
            Channel::Tasks => "tasks",
            Channel::Offers => "offers",
            Channel::Transactions => "transactions",
        }
    }

    /// The channel a config key names.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.name() == name)
    }

    /// The largest message an honest operator sends on this channel, for a cluster of
    /// `operators` running duties for `validators`: anything larger is a peer misbehaving.
    pub fn max_size(self, operators: u32, validators: usize) -> usize {
        match self {
            Channel::Votes | Channel::Certificates | Channel::Resolver => {
                simplex::max_payload_size::<Scheme, cohort_marshal::Digest>(operators)
            }
            Channel::Backfill | Channel::Blocks => {
                cohort_marshal::max_message_size(operators, &cohort_marshal::BlockCfg::default())
            }
            Channel::Partials => cohort_ingress::partial::PartialSignatures::max_encode_size(
                runner::max_partials_per_message(validators),
            ),
            Channel::Exits => cohort_ingress::exits::ExitPartials::max_encode_size(),
            Channel::Tasks => cohort_ingress::avs::TaskMessage::MAX_ENCODE_SIZE,
            Channel::Offers => cohort_ingress::committee::ATTESTATION_OFFER_SIZE,
            Channel::Transactions => cohort_engine::embedded::MAX_TRANSACTION_BYTES,
        }
    }

    /// Messages per second one peer may send on this channel unless configured otherwise: far
    /// above what an honest operator sends (a few per slot per duty), low enough that a flood
    /// is cut off.
    pub const fn default_rate(self) -> NonZeroU32 {
        match self {
            Channel::Votes | Channel::Certificates => NZU32!(256),
            Channel::Partials => NZU32!(128),
            Channel::Resolver | Channel::Backfill | Channel::Blocks => NZU32!(64),
            // An honest operator announces its exits every two slots, and offers one
            // attestation data per slot.
            Channel::Exits | Channel::Offers => NZU32!(8),
            // About three messages per task per peer (a report, two partials), for a load of
            // a thousand tasks per second.
            Channel::Tasks => NZU32!(4096),
            // One message per transaction a user sends the peer.
            Channel::Transactions => NZU32!(1024),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest message on any channel: the network's own limit.
pub fn max_message_size(operators: u32, validators: usize) -> usize {
    Channel::ALL
        .iter()
        .map(|channel| channel.max_size(operators, validators))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_distinct_and_round_trip() {
        for (position, channel) in Channel::ALL.iter().enumerate() {
            assert_eq!(channel.id(), position as u64);
            assert_eq!(Channel::from_name(channel.name()), Some(*channel));
        }
        assert_eq!(Channel::from_name("gossip"), None);
    }
}
