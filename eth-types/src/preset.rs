//! The consensus-spec presets (`presets/{mainnet,minimal}/*.yaml`) as types.
//!
//! Every list and vector limit of a container is a preset value, and the limit is part of the
//! container's `hash_tree_root` (it fixes the depth of the list's tree), so a body parsed with the
//! wrong preset has another root. Containers are generic over [`Preset`]; [`PresetKind`] picks
//! one of the two instantiations at run time (from the beacon node's `PRESET_BASE`).
//!
//! Values are those of the consensus specs' current presets (checked against
//! `presets/{mainnet,minimal}/{phase0,altair,bellatrix,capella,deneb,electra,fulu}.yaml`).
//! Fulu changes no block container, so it has no entry here.

use ssz_types::typenum::{
    U1, U2, U4, U8, U16, U32, U64, U128, U256, U512, U2048, U4096, U8192, U131072, U1048576,
    U1073741824, Unsigned,
};
use std::fmt::Debug;

/// A typenum size usable as a list or vector limit in the containers.
pub trait Size:
    Unsigned + Clone + Copy + Debug + Default + PartialEq + Eq + Send + Sync + 'static
{
}
impl<T: Unsigned + Clone + Copy + Debug + Default + PartialEq + Eq + Send + Sync + 'static> Size
    for T
{
}

/// One preset's container sizes. Names follow the specs' constants.
pub trait Preset: Clone + Copy + Debug + Default + PartialEq + Eq + Send + Sync + 'static {
    /// Which preset this is, for run-time checks and messages.
    const KIND: PresetKind;

    // phase0
    type MaxValidatorsPerCommittee: Size;
    type MaxCommitteesPerSlot: Size;
    /// `MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT`: electra's attestation bitlist and
    /// indexed attestation limit.
    type MaxValidatorsPerSlot: Size;
    type MaxProposerSlashings: Size;
    type MaxAttesterSlashings: Size;
    type MaxAttestations: Size;
    type MaxDeposits: Size;
    type MaxVoluntaryExits: Size;
    // altair
    type SyncCommitteeSize: Size;
    /// `SYNC_COMMITTEE_SIZE / SYNC_COMMITTEE_SUBNET_COUNT`: a contribution's bitvector.
    type SyncSubcommitteeSize: Size;
    // bellatrix
    type MaxBytesPerTransaction: Size;
    type MaxTransactionsPerPayload: Size;
    type BytesPerLogsBloom: Size;
    type MaxExtraDataBytes: Size;
    // capella
    type MaxBlsToExecutionChanges: Size;
    type MaxWithdrawalsPerPayload: Size;
    // deneb
    type MaxBlobCommitmentsPerBlock: Size;
    // electra
    type MaxAttesterSlashingsElectra: Size;
    type MaxAttestationsElectra: Size;
    type MaxDepositRequestsPerPayload: Size;
    type MaxWithdrawalRequestsPerPayload: Size;
    type MaxConsolidationRequestsPerPayload: Size;
}

/// `DEPOSIT_CONTRACT_TREE_DEPTH` (a constant, the same in every preset).
pub const DEPOSIT_CONTRACT_TREE_DEPTH: usize = 32;
/// A deposit's proof has `DEPOSIT_CONTRACT_TREE_DEPTH + 1` nodes (the last mixes in the count).
pub type DepositProofLength = ssz_types::typenum::U33;
/// `SYNC_COMMITTEE_SUBNET_COUNT` (a constant).
pub const SYNC_COMMITTEE_SUBNET_COUNT: u64 = 4;
/// `TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE` (a constant).
pub const TARGET_AGGREGATORS_PER_SYNC_SUBCOMMITTEE: u64 = 16;

/// The mainnet preset (also every public testnet's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mainnet;

/// The minimal preset (small committees and lists), which local test chains such as a Lodestar
/// dev chain run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Minimal;

impl Preset for Mainnet {
    const KIND: PresetKind = PresetKind::Mainnet;
    type MaxValidatorsPerCommittee = U2048;
    type MaxCommitteesPerSlot = U64;
    type MaxValidatorsPerSlot = U131072;
    type MaxProposerSlashings = U16;
    type MaxAttesterSlashings = U2;
    type MaxAttestations = U128;
    type MaxDeposits = U16;
    type MaxVoluntaryExits = U16;
    type SyncCommitteeSize = U512;
    type SyncSubcommitteeSize = U128;
    type MaxBytesPerTransaction = U1073741824;
    type MaxTransactionsPerPayload = U1048576;
    type BytesPerLogsBloom = U256;
    type MaxExtraDataBytes = U32;
    type MaxBlsToExecutionChanges = U16;
    type MaxWithdrawalsPerPayload = U16;
    type MaxBlobCommitmentsPerBlock = U4096;
    type MaxAttesterSlashingsElectra = U1;
    type MaxAttestationsElectra = U8;
    type MaxDepositRequestsPerPayload = U8192;
    type MaxWithdrawalRequestsPerPayload = U16;
    type MaxConsolidationRequestsPerPayload = U2;
}

impl Preset for Minimal {
    const KIND: PresetKind = PresetKind::Minimal;
    type MaxValidatorsPerCommittee = U2048;
    type MaxCommitteesPerSlot = U4;
    type MaxValidatorsPerSlot = U8192;
    type MaxProposerSlashings = U16;
    type MaxAttesterSlashings = U2;
    type MaxAttestations = U128;
    type MaxDeposits = U16;
    type MaxVoluntaryExits = U16;
    type SyncCommitteeSize = U32;
    type SyncSubcommitteeSize = U8;
    type MaxBytesPerTransaction = U1073741824;
    type MaxTransactionsPerPayload = U1048576;
    type BytesPerLogsBloom = U256;
    type MaxExtraDataBytes = U32;
    type MaxBlsToExecutionChanges = U16;
    /// Minimal differs from mainnet here (4, not 16).
    type MaxWithdrawalsPerPayload = U4;
    /// 4096 in the current minimal preset (it was 16, then 32, before consensus-specs #4508).
    type MaxBlobCommitmentsPerBlock = U4096;
    type MaxAttesterSlashingsElectra = U1;
    type MaxAttestationsElectra = U8;
    /// 8192 and 16 below in the current minimal preset (4 and 2 before consensus-specs #4291).
    type MaxDepositRequestsPerPayload = U8192;
    type MaxWithdrawalRequestsPerPayload = U16;
    type MaxConsolidationRequestsPerPayload = U2;
}

/// The preset chosen at run time, from the beacon node's `PRESET_BASE` (`/eth/v1/config/spec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PresetKind {
    Mainnet,
    Minimal,
}

impl PresetKind {
    /// The name as the specs and `PRESET_BASE` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mainnet => "mainnet",
            Self::Minimal => "minimal",
        }
    }

    /// `SYNC_COMMITTEE_SIZE` of this preset.
    pub fn sync_committee_size(self) -> u64 {
        match self {
            Self::Mainnet => <Mainnet as Preset>::SyncCommitteeSize::to_u64(),
            Self::Minimal => <Minimal as Preset>::SyncCommitteeSize::to_u64(),
        }
    }
}

impl std::str::FromStr for PresetKind {
    type Err = crate::Error;

    /// Parses `PRESET_BASE` ("mainnet" or "minimal", as the node reports it; any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mainnet" => Ok(Self::Mainnet),
            "minimal" => Ok(Self::Minimal),
            _ => Err(crate::Error::UnknownPreset(s.to_string())),
        }
    }
}

impl std::fmt::Display for PresetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes<P: Preset>() -> Vec<usize> {
        vec![
            P::MaxValidatorsPerCommittee::to_usize(),
            P::MaxCommitteesPerSlot::to_usize(),
            P::MaxValidatorsPerSlot::to_usize(),
            P::MaxProposerSlashings::to_usize(),
            P::MaxAttesterSlashings::to_usize(),
            P::MaxAttestations::to_usize(),
            P::MaxDeposits::to_usize(),
            P::MaxVoluntaryExits::to_usize(),
            P::SyncCommitteeSize::to_usize(),
            P::SyncSubcommitteeSize::to_usize(),
            P::MaxBytesPerTransaction::to_usize(),
            P::MaxTransactionsPerPayload::to_usize(),
            P::BytesPerLogsBloom::to_usize(),
            P::MaxExtraDataBytes::to_usize(),
            P::MaxBlsToExecutionChanges::to_usize(),
            P::MaxWithdrawalsPerPayload::to_usize(),
            P::MaxBlobCommitmentsPerBlock::to_usize(),
            P::MaxAttesterSlashingsElectra::to_usize(),
            P::MaxAttestationsElectra::to_usize(),
            P::MaxDepositRequestsPerPayload::to_usize(),
            P::MaxWithdrawalRequestsPerPayload::to_usize(),
            P::MaxConsolidationRequestsPerPayload::to_usize(),
        ]
    }

    /// The preset files' values, written out as decimal numbers so that a typo in a typenum
    /// name shows up here.
    #[test]
    fn presets_match_the_spec_yaml() {
        assert_eq!(
            sizes::<Mainnet>(),
            vec![
                2048,
                64,
                131072,
                16,
                2,
                128,
                16,
                16,
                512,
                128,
                1 << 30,
                1 << 20,
                256,
                32,
                16,
                16,
                4096,
                1,
                8,
                8192,
                16,
                2
            ]
        );
        assert_eq!(
            sizes::<Minimal>(),
            vec![
                2048,
                4,
                8192,
                16,
                2,
                128,
                16,
                16,
                32,
                8,
                1 << 30,
                1 << 20,
                256,
                32,
                16,
                4,
                4096,
                1,
                8,
                8192,
                16,
                2
            ]
        );
        assert_eq!(
            DepositProofLength::to_usize(),
            DEPOSIT_CONTRACT_TREE_DEPTH + 1
        );
    }

    /// The derived sizes are the products and quotients the specs define them as.
    #[test]
    fn derived_sizes_follow_their_definition() {
        fn check<P: Preset>() {
            assert_eq!(
                P::MaxValidatorsPerSlot::to_u64(),
                P::MaxValidatorsPerCommittee::to_u64() * P::MaxCommitteesPerSlot::to_u64()
            );
            assert_eq!(
                P::SyncSubcommitteeSize::to_u64(),
                P::SyncCommitteeSize::to_u64() / SYNC_COMMITTEE_SUBNET_COUNT
            );
        }
        check::<Mainnet>();
        check::<Minimal>();
    }

    #[test]
    fn preset_names_parse() {
        assert_eq!("mainnet".parse::<PresetKind>(), Ok(PresetKind::Mainnet));
        assert_eq!("minimal".parse::<PresetKind>(), Ok(PresetKind::Minimal));
        assert!("gnosis".parse::<PresetKind>().is_err());
        assert_eq!(PresetKind::Minimal.sync_committee_size(), 32);
        assert_eq!(Minimal::KIND, PresetKind::Minimal);
    }
}
