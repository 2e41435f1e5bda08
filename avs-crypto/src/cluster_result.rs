//! The two rounds in which a cluster signs one task result with its shared BN254 key.
//!
//! A `TaskResult` carries two signatures, and the second depends on the first: the auth
//! signature is over `keccak256(result_signature)` (see [`crate::auth_bytes`]). So a cluster
//! cannot sign both at once. It first exchanges partials over the result's certificate digest
//! and combines them; threshold BLS is unique, so every operator that combines any t valid
//! partials holds the same `result_signature` and computes the same auth digest. Then it
//! exchanges partials over that digest. Both combined signatures are byte for byte what the
//! whole key gives, which is what lets an unmodified aggregator accept a cluster as one
//! operator.
//!
//! [`ResultSigning`] is one task's state on one operator: the partials received in each round,
//! the operators whose partials turned out bad, and the signatures once combined. It is a pure
//! value (no I/O), fed by whoever carries partials between operators. It does not decide what
//! may be signed: the caller signs a partial only for an output its cluster agreed on, once.

use std::collections::{BTreeMap, BTreeSet};

use crate::bn254::threshold::{
    Bn254Partial, Bn254SecretShare, Bn254Sharing, Combined, HashedMessage, ThresholdError,
};
use crate::encoding::{AuthFields, auth_digest, message_hash};
use crate::hourglass::{ResultFields, ResultSignatures};
use crate::{Address, B256};

/// Which of a result's two signatures a partial is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Round {
    /// Over the certificate digest of `(reference_timestamp, message_hash(task_id, output))`.
    Result,
    /// Over the auth digest, which binds the operator address to the combined result signature.
    Auth,
}

/// What [`ResultSigning::add`] did with a partial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Kept; it is judged when enough partials are there to combine.
    Kept,
    /// The operator already gave a partial for this round; the first one stands.
    Duplicate,
    /// The operator's partials were already found bad; nothing more from it is used.
    Ignored,
    /// The round is already combined; the partial is not needed.
    Late,
}

/// One task result being signed by a cluster, on one operator.
#[derive(Clone, Debug)]
pub struct ResultSigning {
    sharing: Bn254Sharing,
    task_id: B256,
    avs: Address,
    operator: Address,
    operator_set_id: u32,
    result_message: HashedMessage,
    result_partials: BTreeMap<u32, Bn254Partial>,
    result_signature: Option<[u8; 64]>,
    /// Known once the result signature is combined.
    auth_message: Option<HashedMessage>,
    /// Kept even before the auth message is known: a faster peer's auth partial can arrive
    /// before this operator has combined the result.
    auth_partials: BTreeMap<u32, Bn254Partial>,
    auth_signature: Option<[u8; 64]>,
    bad: BTreeMap<u32, Round>,
}

impl ResultSigning {
    /// A result to sign: `fields.operator` is the address the cluster is registered under (the
    /// auth names it), the same on every operator of the cluster.
    pub fn new(sharing: Bn254Sharing, fields: &ResultFields<'_>) -> Self {
        let hash = message_hash(&fields.task_id, fields.output);
        Self {
            result_message: HashedMessage::certificate(fields.reference_timestamp, &hash),
            sharing,
            task_id: fields.task_id,
            avs: fields.avs,
            operator: fields.operator,
            operator_set_id: fields.operator_set_id,
            result_partials: BTreeMap::new(),
            result_signature: None,
            auth_message: None,
            auth_partials: BTreeMap::new(),
            auth_signature: None,
            bad: BTreeMap::new(),
        }
    }

    /// This operator's partial for the result round.
    pub fn result_partial(&self, share: &Bn254SecretShare) -> Bn254Partial {
        share.sign(&self.result_message)
    }

    /// This operator's partial for the auth round, once the result signature is combined (the
    /// auth is over it).
    pub fn auth_partial(&self, share: &Bn254SecretShare) -> Option<Bn254Partial> {
        self.auth_message
            .as_ref()
            .map(|message| share.sign(message))
    }

    /// Takes a partial from whoever carried it. The caller binds `partial.operator` to the peer
    /// that sent it; an operator the sharing does not know is the caller's error.
    pub fn add(&mut self, round: Round, partial: Bn254Partial) -> Result<Added, ThresholdError> {
        if partial.operator >= self.sharing.operators() {
            return Err(ThresholdError::UnknownOperator {
                operator: partial.operator,
                operators: self.sharing.operators(),
            });
        }
        if self.bad.contains_key(&partial.operator) {
            return Ok(Added::Ignored);
        }
        let (partials, combined) = match round {
            Round::Result => (&mut self.result_partials, self.result_signature.is_some()),
            Round::Auth => (&mut self.auth_partials, self.auth_signature.is_some()),
        };
        if combined {
            return Ok(Added::Late);
        }
        if partials.contains_key(&partial.operator) {
            return Ok(Added::Duplicate);
        }
        partials.insert(partial.operator, partial);
        Ok(Added::Kept)
    }

    /// Combines whatever round has enough partials: the result round, then the auth round.
    /// Returns the two signatures once both are combined. Partials found bad on the way are
    /// dropped (see [`Self::bad`]), and the round waits for more.
    pub fn advance(&mut self) -> Option<ResultSignatures> {
        // At most the two rounds, in order.
        for _ in 0..2 {
            let Some((round, message, partials)) = self.combinable() else {
                break;
            };
            let outcome = self.sharing.combine_verified(&message, &partials);
            self.settle(round, outcome);
        }
        self.signatures()
    }

    /// The round that has enough partials to combine now, with its message and partials: for
    /// a caller that combines many tasks' rounds in one batch
    /// ([`Bn254Sharing::combine_verified_batch`]) and hands each outcome to [`Self::settle`].
    pub fn combinable(&self) -> Option<(Round, HashedMessage, Vec<Bn254Partial>)> {
        let need = self.sharing.threshold() as usize;
        if self.result_signature.is_none() {
            return (self.result_partials.len() >= need).then(|| {
                (
                    Round::Result,
                    self.result_message,
                    self.result_partials.values().copied().collect(),
                )
            });
        }
        let message = self.auth_message?;
        (self.auth_signature.is_none() && self.auth_partials.len() >= need).then(|| {
            (
                Round::Auth,
                message,
                self.auth_partials.values().copied().collect(),
            )
        })
    }

    /// Takes the outcome of combining the partials [`Self::combinable`] gave for `round`:
    /// keeps the signature (the result's makes the auth message known), drops the bad partials
    /// and remembers their operators, so later partials from them are ignored.
    pub fn settle(&mut self, round: Round, outcome: Result<Combined, ThresholdError>) {
        let (signature, bad) = match outcome {
            Ok(combined) => (Some(combined.signature), combined.bad),
            Err(ThresholdError::NotEnoughPartials { bad, .. }) => (None, bad),
            // Operators are checked on `add` and kept once each, so the other errors cannot
            // come from a peer; without a signature, the round waits for more partials.
            Err(_) => (None, Vec::new()),
        };
        for operator in bad {
            self.bad.entry(operator).or_insert(round);
            self.result_partials.remove(&operator);
            self.auth_partials.remove(&operator);
        }
        let Some(signature) = signature else {
            return;
        };
        match round {
            Round::Result if self.result_signature.is_none() => {
                self.result_signature = Some(signature);
                self.auth_message = Some(HashedMessage::gnark(
                    auth_digest(&AuthFields {
                        task_id: self.task_id,
                        avs: self.avs,
                        operator: self.operator,
                        operator_set_id: self.operator_set_id,
                        result_signature: &signature,
                    })
                    .as_slice(),
                ));
            }
            Round::Auth if self.auth_message.is_some() && self.auth_signature.is_none() => {
                self.auth_signature = Some(signature);
            }
            _ => {}
        }
    }

    /// Both signatures, once combined.
    pub fn signatures(&self) -> Option<ResultSignatures> {
        Some(ResultSignatures {
            result_signature: self.result_signature?.to_vec(),
            auth_signature: self.auth_signature?.to_vec(),
        })
    }

    /// The combined result signature, once the first round is done.
    pub fn result_signature(&self) -> Option<&[u8; 64]> {
        self.result_signature.as_ref()
    }

    /// The operators whose partials did not verify, with the round that showed it.
    pub fn bad(&self) -> &BTreeMap<u32, Round> {
        &self.bad
    }

    /// The operators whose partial for `round` this operator holds.
    pub fn received(&self, round: Round) -> BTreeSet<u32> {
        match round {
            Round::Result => self.result_partials.keys().copied().collect(),
            Round::Auth => self.auth_partials.keys().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
