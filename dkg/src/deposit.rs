//! Deposit data for new validators, in the staking launchpad's `deposit_data-*.json` format.
//!
//! A deposit's signature is the validator's own: `DepositMessage(pubkey, withdrawal_credentials,
//! amount)` signed under `DOMAIN_DEPOSIT` with the network's genesis fork version and a zero
//! `genesis_validators_root` (deposits are valid before genesis, so they cannot commit to it).
//! Here the validator's key exists only as shares, so the signature is threshold-signed by the
//! cluster during the ceremony and checked against the group key before anything is written.

use alloy_primitives::{Address, B256, FixedBytes};
use cohort_eth_types::{DepositData, DepositMessage};
use cohort_ingress::{
    keys::{Signature, ValidatorPublicKey, signature_bytes},
    signing::{DOMAIN_DEPOSIT, compute_domain, compute_signing_root},
};
use commonware_codec::Encode as _;
use serde::{Deserialize, Serialize};
use tree_hash::TreeHash as _;

/// 32 ETH, in gwei: the amount the launchpad expects of a new validator.
pub const DEFAULT_AMOUNT_GWEI: u64 = 32_000_000_000;

/// What the launchpad checks `deposit_cli_version` against; the files it accepts carry the
/// deposit CLI's version, so ours says which format it follows.
pub const DEPOSIT_CLI_VERSION: &str = "2.7.0";

/// A network deposits are made on: its name as the launchpad spells it and its genesis fork
/// version (the version deposits are signed with, whatever the current fork).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub genesis_fork_version: [u8; 4],
}

impl Network {
    /// The networks the launchpad knows, by name.
    pub fn named(name: &str) -> Option<Self> {
        let version = match name {
            "mainnet" => [0x00, 0x00, 0x00, 0x00],
            "sepolia" => [0x90, 0x00, 0x00, 0x69],
            "holesky" => [0x01, 0x01, 0x70, 0x00],
            "hoodi" => [0x10, 0x00, 0x09, 0x10],
            _ => return None,
        };
        Some(Self {
            name: name.to_string(),
            genesis_fork_version: version,
        })
    }
}

/// What every validator of one ceremony deposits with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositTerms {
    pub network: Network,
    /// Where withdrawals go: credentials `0x01 ‖ 11 zero bytes ‖ address`.
    pub withdrawal_address: Address,
    pub amount_gwei: u64,
}

impl DepositTerms {
    /// `0x01` execution-address withdrawal credentials.
    pub fn withdrawal_credentials(&self) -> B256 {
        let mut credentials = [0u8; 32];
        credentials[0] = 0x01;
        credentials[12..].copy_from_slice(self.withdrawal_address.as_slice());
        B256::from(credentials)
    }

    fn message(&self, pubkey: &ValidatorPublicKey) -> DepositMessage {
        DepositMessage {
            pubkey: FixedBytes::<48>::from_slice(&pubkey.encode()),
            withdrawal_credentials: self.withdrawal_credentials(),
            amount: self.amount_gwei,
        }
    }

    /// What the validator signs for its deposit.
    pub fn signing_root(&self, pubkey: &ValidatorPublicKey) -> [u8; 32] {
        let domain = compute_domain(DOMAIN_DEPOSIT, self.network.genesis_fork_version, [0u8; 32]);
        compute_signing_root(self.message(pubkey).tree_hash_root().0, domain)
    }

    /// The launchpad's entry for one validator, given its deposit signature.
    pub fn entry(&self, pubkey: &ValidatorPublicKey, signature: &Signature) -> DepositEntry {
        let message = self.message(pubkey);
        let data = DepositData {
            pubkey: message.pubkey,
            withdrawal_credentials: message.withdrawal_credentials,
            amount: message.amount,
            signature: FixedBytes::<96>::from(signature_bytes(signature)),
        };
        DepositEntry {
            pubkey: hex(message.pubkey.as_slice()),
            withdrawal_credentials: hex(message.withdrawal_credentials.as_slice()),
            amount: message.amount,
            signature: hex(data.signature.as_slice()),
            deposit_message_root: hex(&message.tree_hash_root().0),
            deposit_data_root: hex(&data.tree_hash_root().0),
            fork_version: hex(&self.network.genesis_fork_version),
            network_name: self.network.name.clone(),
            deposit_cli_version: DEPOSIT_CLI_VERSION.to_string(),
        }
    }
}

/// One validator's entry of `deposit-data.json`: hex without `0x`, the amount in gwei as a
/// number, as the deposit CLI writes them and the launchpad reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositEntry {
    pub pubkey: String,
    pub withdrawal_credentials: String,
    pub amount: u64,
    pub signature: String,
    pub deposit_message_root: String,
    pub deposit_data_root: String,
    pub fork_version: String,
    pub network_name: String,
    pub deposit_cli_version: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_ingress::keys;
    use commonware_cryptography::bls12381::primitives::{ops, variant::MinPk};

    fn terms() -> DepositTerms {
        DepositTerms {
            network: Network::named("hoodi").expect("known"),
            withdrawal_address: "0x00000000219ab540356cBB839Cbe05303d7705Fa"
                .parse()
                .expect("address"),
            amount_gwei: DEFAULT_AMOUNT_GWEI,
        }
    }

    #[test]
    fn credentials_are_0x01_eleven_zeros_and_the_address() {
        let credentials = terms().withdrawal_credentials();
        assert_eq!(
            hex(credentials.as_slice()),
            "01000000000000000000000000000000219ab540356cbb839cbe05303d7705fa"
        );
    }

    #[test]
    fn an_entry_carries_a_signature_over_its_message_root() {
        let secret = keys::interop_secret(3);
        let public = ops::compute_public::<MinPk>(&secret);
        let terms = terms();
        let root = terms.signing_root(&public);
        let entry = terms.entry(&public, &keys::sign(&secret, &root));
        assert_eq!(entry.pubkey, keys::to_hex(&public));
        assert_eq!(entry.amount, 32_000_000_000);
        assert_eq!(entry.fork_version, "10000910");
        assert_eq!(entry.network_name, "hoodi");
        let signature = keys::signature_from_hex(&entry.signature).expect("signature");
        assert!(keys::verify(&public, &root, &signature));
        // Another network's domain gives another root: the same file is no deposit there.
        let mainnet = DepositTerms {
            network: Network::named("mainnet").expect("known"),
            ..terms
        };
        assert_ne!(mainnet.signing_root(&public), root);
    }
}
