//! The Beacon node API's JSON shapes, as far as a validator client reads and writes them.
//!
//! Integers travel as decimal strings and bytes as `0x` hex; unknown fields are ignored (every
//! node adds its own), and fields that newer nodes added are optional so an older node's answer
//! still parses. The conversions to the cluster's own types live here too, so that no other
//! module ever sees a string where a number belongs.

use cohort_ingress::{
    AttestationData, AttesterDuty, Checkpoint, ProposerDuty, Root,
    keys::{self, Signature},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// `{"data": …}`, the envelope of almost every answer.
#[derive(Debug, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// An envelope that also names the block its duties depend on: duties stay valid only while
/// that block is canonical.
#[derive(Debug, Deserialize)]
pub struct Dependent<T> {
    pub data: T,
    #[serde(default, deserialize_with = "opt_root")]
    pub dependent_root: Option<Root>,
}

/// Decimal-string integers, as the API writes every `uint64`.
pub mod quoted {
    use super::*;

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        // Some nodes write small integers as JSON numbers; accept both.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(deserializer)? {
            Either::Text(text) => text
                .parse()
                .map_err(|_| D::Error::custom(format!("`{text}` is not a decimal uint64"))),
            Either::Number(number) => Ok(number),
        }
    }
}

/// A list of decimal-string integers.
pub mod quoted_vec {
    use super::*;

    pub fn serialize<S: Serializer>(values: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(|v| v.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|_| D::Error::custom(format!("`{text}` is not a decimal uint64")))
            })
            .collect()
    }
}

/// Parses `0x`-prefixed hex of exactly `N` bytes.
pub fn fixed_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = keys::decode_hex(text).ok_or_else(|| format!("`{text}` is not 0x-prefixed hex"))?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| format!("{} bytes where {N} belong", bytes.len()))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// 32-byte roots.
pub mod root {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Root, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(&value.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Root, D::Error> {
        let text = String::deserialize(deserializer)?;
        fixed_hex::<32>(&text)
            .map(commonware_cryptography_digest)
            .map_err(D::Error::custom)
    }
}

fn commonware_cryptography_digest(bytes: [u8; 32]) -> Root {
    Root::from(bytes)
}

fn opt_root<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Root>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|text| {
        fixed_hex::<32>(&text)
            .map(Root::from)
            .map_err(D::Error::custom)
    })
    .transpose()
}

/// Fixed-length byte strings (fork versions, signatures, public keys, addresses).
pub mod bytes_n {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(
        value: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        fixed_hex::<N>(&text).map_err(D::Error::custom)
    }
}

/// Variable-length byte strings (bitlists, bitvectors).
pub mod bytes_vec {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        keys::decode_hex(&text).ok_or_else(|| D::Error::custom(format!("`{text}` is not hex")))
    }
}

/// SSZ bitlist bytes: the bits, then a single delimiting 1 bit that marks the length.
pub fn bitlist_to_bytes(bits: &[bool]) -> Vec<u8> {
    let mut bytes = vec![0u8; bits.len() / 8 + 1];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    bytes[bits.len() / 8] |= 1 << (bits.len() % 8);
    bytes
}

/// The inverse of [`bitlist_to_bytes`]; fails on a missing delimiter (a zero last byte).
pub fn bitlist_from_bytes(bytes: &[u8]) -> Result<Vec<bool>, String> {
    let last = *bytes.last().ok_or("an empty bitlist has no delimiter")?;
    if last == 0 {
        return Err("bitlist's last byte has no delimiter bit".into());
    }
    let length = (bytes.len() - 1) * 8 + (7 - last.leading_zeros() as usize);
    Ok((0..length)
        .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect())
}

/// SSZ bitvector bytes of `length` bits.
pub fn bitvector_to_bytes(bits: &[bool]) -> Vec<u8> {
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    bytes
}

/// A BLS signature as the API writes it.
pub mod signature {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Signature, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(&keys::signature_bytes(value)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        let text = String::deserialize(deserializer)?;
        keys::signature_from_hex(&text)
            .ok_or_else(|| D::Error::custom(format!("`{text}` is not a BLS signature")))
    }
}

#[derive(Debug, Deserialize)]
pub struct Genesis {
    #[serde(with = "quoted")]
    pub genesis_time: u64,
    #[serde(with = "root")]
    pub genesis_validators_root: Root,
    #[serde(with = "bytes_n")]
    pub genesis_fork_version: [u8; 4],
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Fork {
    #[serde(with = "bytes_n")]
    pub previous_version: [u8; 4],
    #[serde(with = "bytes_n")]
    pub current_version: [u8; 4],
    #[serde(with = "quoted")]
    pub epoch: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Syncing {
    #[serde(with = "quoted")]
    pub head_slot: u64,
    #[serde(with = "quoted")]
    pub sync_distance: u64,
    pub is_syncing: bool,
    #[serde(default)]
    pub is_optimistic: Option<bool>,
    #[serde(default)]
    pub el_offline: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Version {
    pub version: String,
}

#[derive(Debug, Deserialize)]
pub struct ValidatorEntry {
    #[serde(with = "quoted")]
    pub index: u64,
    pub status: String,
    pub validator: ValidatorRecord,
}

#[derive(Debug, Deserialize)]
pub struct ValidatorRecord {
    pub pubkey: String,
}

#[derive(Debug, Deserialize)]
pub struct AttesterDutyJson {
    #[serde(with = "quoted")]
    pub validator_index: u64,
    #[serde(with = "quoted")]
    pub committee_index: u64,
    #[serde(with = "quoted")]
    pub committee_length: u64,
    #[serde(default, with = "opt_quoted")]
    pub committees_at_slot: Option<u64>,
    #[serde(with = "quoted")]
    pub validator_committee_index: u64,
    #[serde(with = "quoted")]
    pub slot: u64,
}

impl AttesterDutyJson {
    pub fn into_duty(self) -> AttesterDuty {
        AttesterDuty {
            slot: self.slot,
            validator_index: self.validator_index,
            committee_index: self.committee_index,
            committee_length: self.committee_length,
            validator_committee_index: self.validator_committee_index,
        }
    }
}

/// Optional decimal-string integers.
pub mod opt_quoted {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| {
            text.parse()
                .map_err(|_| D::Error::custom(format!("`{text}` is not a decimal uint64")))
        })
        .transpose()
    }
}

#[derive(Debug, Deserialize)]
pub struct ProposerDutyJson {
    #[serde(with = "quoted")]
    pub validator_index: u64,
    #[serde(with = "quoted")]
    pub slot: u64,
}

impl ProposerDutyJson {
    pub fn into_duty(self) -> ProposerDuty {
        ProposerDuty {
            slot: self.slot,
            validator_index: self.validator_index,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SyncDutyJson {
    #[serde(with = "quoted")]
    pub validator_index: u64,
    #[serde(with = "quoted_vec")]
    pub validator_sync_committee_indices: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointJson {
    #[serde(with = "quoted")]
    pub epoch: u64,
    #[serde(with = "root")]
    pub root: Root,
}

impl From<CheckpointJson> for Checkpoint {
    fn from(json: CheckpointJson) -> Self {
        Checkpoint {
            epoch: json.epoch,
            root: json.root,
        }
    }
}

impl From<Checkpoint> for CheckpointJson {
    fn from(checkpoint: Checkpoint) -> Self {
        CheckpointJson {
            epoch: checkpoint.epoch,
            root: checkpoint.root,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttestationDataJson {
    #[serde(with = "quoted")]
    pub slot: u64,
    #[serde(with = "quoted")]
    pub index: u64,
    #[serde(with = "root")]
    pub beacon_block_root: Root,
    pub source: CheckpointJson,
    pub target: CheckpointJson,
}

impl From<AttestationDataJson> for AttestationData {
    fn from(json: AttestationDataJson) -> Self {
        AttestationData {
            slot: json.slot,
            index: json.index,
            beacon_block_root: json.beacon_block_root,
            source: json.source.into(),
            target: json.target.into(),
        }
    }
}

impl From<AttestationData> for AttestationDataJson {
    fn from(data: AttestationData) -> Self {
        AttestationDataJson {
            slot: data.slot,
            index: data.index,
            beacon_block_root: data.beacon_block_root,
            source: data.source.into(),
            target: data.target.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct FinalityCheckpoints {
    pub finalized: CheckpointJson,
}

/// `Attestation` before Electra: one committee, bits over its members.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttestationJson {
    #[serde(with = "bytes_vec")]
    pub aggregation_bits: Vec<u8>,
    pub data: AttestationDataJson,
    #[serde(with = "bytes_n")]
    pub signature: [u8; 96],
}

/// `Attestation` from Electra on: bits over every committee named in `committee_bits`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ElectraAttestationJson {
    #[serde(with = "bytes_vec")]
    pub aggregation_bits: Vec<u8>,
    pub data: AttestationDataJson,
    #[serde(with = "bytes_n")]
    pub signature: [u8; 96],
    #[serde(with = "bytes_vec")]
    pub committee_bits: Vec<u8>,
}

/// `SingleAttestation` (Electra): one attester, named by index rather than by a bit.
#[derive(Debug, Serialize, Deserialize)]
pub struct SingleAttestationJson {
    #[serde(with = "quoted")]
    pub committee_index: u64,
    #[serde(with = "quoted")]
    pub attester_index: u64,
    pub data: AttestationDataJson,
    #[serde(with = "bytes_n")]
    pub signature: [u8; 96],
}

#[derive(Debug, Serialize)]
pub struct AggregateAndProofJson<A> {
    #[serde(with = "quoted")]
    pub aggregator_index: u64,
    pub aggregate: A,
    #[serde(with = "bytes_n")]
    pub selection_proof: [u8; 96],
}

#[derive(Debug, Serialize)]
pub struct Signed<M> {
    pub message: M,
    #[serde(with = "bytes_n")]
    pub signature: [u8; 96],
}

#[derive(Debug, Serialize)]
pub struct BeaconCommitteeSubscription {
    #[serde(with = "quoted")]
    pub validator_index: u64,
    #[serde(with = "quoted")]
    pub committee_index: u64,
    #[serde(with = "quoted")]
    pub committees_at_slot: u64,
    #[serde(with = "quoted")]
    pub slot: u64,
    pub is_aggregator: bool,
}

#[derive(Debug, Serialize)]
pub struct SyncCommitteeSubscription {
    #[serde(with = "quoted")]
    pub validator_index: u64,
    #[serde(with = "quoted_vec")]
    pub sync_committee_indices: Vec<u64>,
    #[serde(with = "quoted")]
    pub until_epoch: u64,
}

/// A sync committee contribution as the API writes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ContributionJson {
    #[serde(with = "quoted")]
    pub slot: u64,
    #[serde(with = "root")]
    pub beacon_block_root: Root,
    #[serde(with = "quoted")]
    pub subcommittee_index: u64,
    #[serde(with = "bytes_vec")]
    pub aggregation_bits: Vec<u8>,
    #[serde(with = "bytes_n")]
    pub signature: [u8; 96],
}

#[derive(Debug, Serialize)]
pub struct ContributionAndProofJson {
    #[serde(with = "quoted")]
    pub aggregator_index: u64,
    pub contribution: ContributionJson,
    #[serde(with = "bytes_n")]
    pub selection_proof: [u8; 96],
}

#[derive(Debug, Serialize)]
pub struct SyncCommitteeMessageJson {
    #[serde(with = "quoted")]
    pub slot: u64,
    #[serde(with = "root")]
    pub beacon_block_root: Root,
    #[serde(with = "quoted")]
    pub validator_index: u64,
    #[serde(with = "bytes_n")]
    pub signature: [u8; 96],
}

/// Bits of an SSZ bitvector of `length` bits; fails on a wrong byte count or stray high bits.
pub fn bitvector_from_bytes(bytes: &[u8], length: usize) -> Result<Vec<bool>, String> {
    if bytes.len() != length.div_ceil(8) {
        return Err(format!(
            "a bitvector of {length} bits has {} bytes, not {}",
            length.div_ceil(8),
            bytes.len()
        ));
    }
    let bits: Vec<bool> = (0..bytes.len() * 8)
        .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    if bits[length..].iter().any(|bit| *bit) {
        return Err("a bitvector has bits set past its length".into());
    }
    Ok(bits[..length].to_vec())
}

#[derive(Debug, Serialize)]
pub struct ProposerPreparation {
    #[serde(with = "quoted")]
    pub validator_index: u64,
    pub fee_recipient: String,
}

/// The answer of block production (v2 and v3 share `version` and `data`).
#[derive(Debug, Deserialize)]
pub struct ProducedBlock {
    pub version: String,
    #[serde(default)]
    pub execution_payload_blinded: Option<bool>,
    pub data: serde_json::Value,
}

/// The `head` event: a new head block, and the dependent roots whose change invalidates duties.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadEvent {
    #[serde(with = "quoted")]
    pub slot: u64,
    #[serde(with = "root")]
    pub block: Root,
    #[serde(default, deserialize_with = "opt_root")]
    pub previous_duty_dependent_root: Option<Root>,
    #[serde(default, deserialize_with = "opt_root")]
    pub current_duty_dependent_root: Option<Root>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockEvent {
    #[serde(with = "quoted")]
    pub slot: u64,
    #[serde(with = "root")]
    pub block: Root,
}

/// An error body: `{"code": 400, "message": "…", "failures": [...]}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub failures: Option<Vec<serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitlists_round_trip_with_their_delimiter() {
        for length in [0usize, 1, 7, 8, 9, 64, 2048] {
            let bits: Vec<bool> = (0..length).map(|i| i % 3 == 0).collect();
            let bytes = bitlist_to_bytes(&bits);
            assert_eq!(bytes.len(), length / 8 + 1);
            assert_eq!(bitlist_from_bytes(&bytes).unwrap(), bits);
        }
        // One attester (bit 2) of a committee of 4: 0b0001_0100.
        assert_eq!(bitlist_to_bytes(&[false, false, true, false]), vec![0x14]);
        assert!(bitlist_from_bytes(&[0x01, 0x00]).is_err());
        assert!(bitlist_from_bytes(&[]).is_err());
    }

    #[test]
    fn quoted_integers_parse_and_reject_garbage() {
        let duty: ProposerDutyJson =
            serde_json::from_str(r#"{"pubkey":"0x00","validator_index":"7","slot":"12"}"#).unwrap();
        assert_eq!((duty.validator_index, duty.slot), (7, 12));
        assert!(
            serde_json::from_str::<ProposerDutyJson>(r#"{"validator_index":"x","slot":"1"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<ProposerDutyJson>(r#"{"validator_index":"-1","slot":"1"}"#)
                .is_err()
        );
    }

    #[test]
    fn attestation_data_round_trips_through_json() {
        let text = r#"{"slot":"9","index":"0","beacon_block_root":"0x0101010101010101010101010101010101010101010101010101010101010101","source":{"epoch":"0","root":"0x0000000000000000000000000000000000000000000000000000000000000000"},"target":{"epoch":"1","root":"0x0202020202020202020202020202020202020202020202020202020202020202"}}"#;
        let json: AttestationDataJson = serde_json::from_str(text).unwrap();
        let data: AttestationData = json.into();
        assert_eq!(data.slot, 9);
        assert_eq!(data.target.root.0, [2u8; 32]);
        let back = serde_json::to_value(AttestationDataJson::from(data)).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
    }
}

/// One answer of `POST /eth/v1/validator/liveness/{epoch}`.
#[derive(Debug, Clone, Deserialize)]
pub struct LivenessJson {
    #[serde(with = "quoted")]
    pub index: u64,
    pub is_live: bool,
}
