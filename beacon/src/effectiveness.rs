//! Attestation effectiveness: after an epoch's attestations could have been included, read the
//! blocks that could include them and count, per validator, the included and the missed, and
//! how many slots inclusion took. This is what tells an operator that duties "succeeded" on
//! the chain, not only in the cluster.

use crate::{
    api::{self, Data},
    metrics::ValidatorLabels,
    source::ApiSource,
};
use cohort_ingress::AttesterDuty;
use commonware_runtime::Clock;
use serde::Deserialize;
use std::collections::BTreeMap;
use tracing::{info, warn};

#[derive(Deserialize)]
struct SignedBlockJson {
    message: BlockJson,
}

#[derive(Deserialize)]
struct BlockJson {
    #[serde(with = "api::quoted")]
    slot: u64,
    body: BodyJson,
}

#[derive(Deserialize)]
struct BodyJson {
    #[serde(default)]
    attestations: Vec<IncludedAttestation>,
}

#[derive(Deserialize)]
struct IncludedAttestation {
    #[serde(with = "api::bytes_vec")]
    aggregation_bits: Vec<u8>,
    data: api::AttestationDataJson,
}

/// What one epoch's check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub included: usize,
    pub missed: usize,
    /// Slots from each included attestation's slot to the first block that carried it.
    pub distances: Vec<u64>,
}

/// For each duty, the first block slot that included its validator's bit.
fn inclusions(
    duties: &[AttesterDuty],
    blocks: &[(u64, Vec<IncludedAttestation>)],
) -> Vec<Option<u64>> {
    duties
        .iter()
        .map(|duty| {
            blocks
                .iter()
                .filter(|(slot, _)| *slot > duty.slot)
                .find(|(_, attestations)| {
                    attestations.iter().any(|attestation| {
                        attestation.data.slot == duty.slot
                            && attestation.data.index == duty.committee_index
                            && api::bitlist_from_bytes(&attestation.aggregation_bits)
                                .ok()
                                .and_then(|bits| {
                                    bits.get(duty.validator_committee_index as usize).copied()
                                })
                                .unwrap_or(false)
                    })
                })
                .map(|(slot, _)| *slot)
        })
        .collect()
}

/// Checks `epoch`'s attestations, which blocks of that epoch and the next may include (so call
/// it once the epoch after next has started). Electra attestations name committees by bits
/// over the slot's committees, which this check does not read yet: it skips those epochs.
pub async fn check_epoch<E: Clock + Send + Sync + 'static>(
    source: &ApiSource<E>,
    epoch: u64,
) -> Option<Summary> {
    let duties = source.attester_duties_of(epoch)?;
    if duties.is_empty() {
        return None;
    }
    let chain = source.chain();
    if chain.electra_fork_epoch.is_some_and(|first| epoch >= first) {
        return None;
    }
    let first = epoch * chain.slots_per_epoch + 1;
    let last = (epoch + 2) * chain.slots_per_epoch;
    let mut blocks = Vec::new();
    for slot in first..last {
        let path = format!("/eth/v2/beacon/blocks/{slot}");
        let result: Result<Data<SignedBlockJson>, String> = source
            .nodes()
            .read("a block for attestation effectiveness", |node| {
                let path = &path;
                async move { node.get("beacon/blocks", path).await }
            })
            .await;
        match result {
            Ok(block) => blocks.push((
                block.data.message.slot,
                block.data.message.body.attestations,
            )),
            // An empty slot answers 404: nothing to include from it.
            Err(err) if err.contains("HTTP 404") => {}
            Err(err) => {
                warn!(epoch, slot, %err, "could not read a block; attestation effectiveness of the epoch is not counted");
                return None;
            }
        }
    }
    let mut summary = Summary::default();
    let mut missed_by_validator: BTreeMap<u64, u64> = BTreeMap::new();
    for (duty, included) in duties.iter().zip(inclusions(&duties, &blocks)) {
        let labels = ValidatorLabels {
            validator: duty.validator_index.to_string(),
        };
        match included {
            Some(block_slot) => {
                let distance = block_slot - duty.slot;
                summary.included += 1;
                summary.distances.push(distance);
                source.metrics().included.get_or_create(&labels).inc();
                source.metrics().inclusion_distance.observe(distance as f64);
            }
            None => {
                summary.missed += 1;
                *missed_by_validator.entry(duty.validator_index).or_default() += 1;
                source.metrics().missed.get_or_create(&labels).inc();
            }
        }
    }
    let missed: Vec<u64> = missed_by_validator.keys().copied().collect();
    info!(
        epoch,
        included = summary.included,
        missed = summary.missed,
        ?missed,
        mean_distance = if summary.distances.is_empty() {
            0.0
        } else {
            summary.distances.iter().sum::<u64>() as f64 / summary.distances.len() as f64
        },
        "attestation effectiveness of the epoch"
    );
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_ingress::Root;

    fn attestation(slot: u64, index: u64, bits: &[bool]) -> IncludedAttestation {
        let root = api::CheckpointJson {
            epoch: 0,
            root: Root::from([0u8; 32]),
        };
        IncludedAttestation {
            aggregation_bits: api::bitlist_to_bytes(bits),
            data: api::AttestationDataJson {
                slot,
                index,
                beacon_block_root: Root::from([1u8; 32]),
                source: root,
                target: root,
            },
        }
    }

    #[test]
    fn a_duty_counts_as_included_only_with_its_own_bit_in_its_own_committee() {
        let duty = |slot, committee_index, position| AttesterDuty {
            slot,
            validator_index: 7,
            committee_index,
            committee_length: 4,
            validator_committee_index: position,
        };
        let duties = [duty(10, 0, 2), duty(10, 1, 0), duty(11, 0, 3)];
        let blocks = vec![
            // Slot 11 carries slot 10, committee 0, bit 2 (and committee 1 without bit 0).
            (
                11,
                vec![
                    attestation(10, 0, &[false, false, true, false]),
                    attestation(10, 1, &[false, true, false, false]),
                ],
            ),
            // Slot 13 carries slot 10 committee 1 bit 0, two slots late.
            (13, vec![attestation(10, 1, &[true, false, false, false])]),
        ];
        assert_eq!(inclusions(&duties, &blocks), vec![Some(11), Some(13), None]);
        // A block cannot include an attestation of its own slot or later.
        let same_slot = vec![(10, vec![attestation(10, 0, &[false, false, true, false])])];
        assert_eq!(inclusions(&duties[..1], &same_slot), vec![None]);
    }
}
