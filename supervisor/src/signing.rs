//! The one seam between the supervisor and Hourglass's signing math (crate
//! `cohort-avs-crypto`): loading the operator key, checking aggregator signatures, signing
//! results, auth signatures and management challenges. Nothing else in the crate touches a key
//! or a curve, so the math can be audited (and swapped) in one place.

use cohort_avs_crypto::{
    Address, B256, Bn254Key, Bn254PublicKey, EcdsaKey, Eip712Domain, ResultFields,
    ResultSignatures, TaskFields,
};
use std::path::Path;

/// The operator's signing key: `cohort-avs-crypto`'s, which signs results and auth exactly as
/// Hourglass does (cross-checked there against an independent Python implementation). ECDSA
/// results are signed over the EIP-712 certificate digest of the configured
/// `ECDSACertificateVerifier`, so the key carries that domain.
#[derive(Clone, Debug)]
pub struct OperatorKey(pub cohort_avs_crypto::OperatorKey);

impl OperatorKey {
    /// Loads the key from a secret file (mode 0600, refused otherwise) holding the secret
    /// scalar as hex (`0x` optional), or an EIP-2335 keystore when `path` ends in `.json`
    /// (its password in `<path>.password`, also 0600).
    pub fn load(
        kind: &str,
        path: &Path,
        verifier: Option<&str>,
        verifier_version: &str,
    ) -> Result<Self, String> {
        let secret = read_scalar(path)?;
        match kind {
            "ecdsa" => {
                let key = EcdsaKey::from_bytes(&secret)
                    .map_err(|err| format!("{}: {err}", path.display()))?;
                let Some(verifier) = verifier else {
                    return Err(
                        "an ECDSA key needs avs.ecdsa_certificate_verifier (the EIP-712 domain of \
                         result signatures)"
                            .into(),
                    );
                };
                let contract: Address = verifier
                    .parse()
                    .map_err(|_| format!("ecdsa_certificate_verifier `{verifier}`"))?;
                Ok(Self(cohort_avs_crypto::OperatorKey::Ecdsa {
                    key,
                    domain: Eip712Domain::eigenlayer(verifier_version, contract),
                }))
            }
            "bn254" => Bn254Key::from_be_bytes(&secret)
                .map(|key| Self(cohort_avs_crypto::OperatorKey::Bn254(key)))
                .map_err(|err| format!("{}: {err}", path.display())),
            other => Err(format!("kind `{other}` is neither `ecdsa` nor `bn254`")),
        }
    }

    /// The ECDSA key's address (lowercase `0x…`); BN254 keys have none of their own.
    pub fn address(&self) -> Option<String> {
        match &self.0 {
            cohort_avs_crypto::OperatorKey::Ecdsa { key, .. } => {
                Some(format!("{:#x}", key.address()))
            }
            cohort_avs_crypto::OperatorKey::Bn254(_) => None,
        }
    }

    /// The result signature (over the certificate digest of `messageHash =
    /// keccak256(abi.encode(task_id, output))`) and the auth signature binding `operator` to it.
    pub fn sign_result(
        &self,
        task_id: &B256,
        avs: &Address,
        operator: &Address,
        operator_set_id: u32,
        reference_timestamp: u32,
        output: &[u8],
    ) -> ResultSignatures {
        self.0.sign_result(&ResultFields {
            task_id: *task_id,
            avs: *avs,
            operator: *operator,
            operator_set_id,
            reference_timestamp,
            output,
        })
    }

    /// Whether `signature` is the operator's over the management challenge `token`: ECDSA
    /// must recover to the operator's address; BN254 must verify under its public key.
    pub fn challenge_matches(&self, token: &str, signature: &[u8]) -> bool {
        match &self.0 {
            cohort_avs_crypto::OperatorKey::Ecdsa { key, .. } => {
                cohort_avs_crypto::verify_challenge_ecdsa(token, signature, &key.address()).is_ok()
            }
            cohort_avs_crypto::OperatorKey::Bn254(key) => {
                cohort_avs_crypto::verify_challenge_bn254(token, signature, key.public_key())
                    .is_ok()
            }
        }
    }

    /// Signs a management challenge token as Hourglass's client does (for `cohort performers`).
    pub fn sign_challenge(&self, token: &str) -> Vec<u8> {
        match &self.0 {
            cohort_avs_crypto::OperatorKey::Ecdsa { key, .. } => {
                cohort_avs_crypto::sign_challenge_ecdsa(key, token).to_vec()
            }
            cohort_avs_crypto::OperatorKey::Bn254(key) => {
                cohort_avs_crypto::sign_challenge_bn254(key, token).to_vec()
            }
        }
    }
}

fn read_scalar(path: &Path) -> Result<Vec<u8>, String> {
    if path.extension().is_some_and(|ext| ext == "json") {
        let bytes = cohort_keystore::files::read_secret(path).map_err(|err| err.to_string())?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| format!("keystore {} is not UTF-8", path.display()))?;
        let keystore = cohort_keystore::eip2335::Keystore::from_json(text)
            .map_err(|err| format!("keystore {}: {err}", path.display()))?;
        let mut password_path = path.as_os_str().to_owned();
        password_path.push(".password");
        let password = cohort_keystore::files::read_password(Path::new(&password_path))
            .map_err(|err| err.to_string())?;
        let secret = cohort_keystore::eip2335::decrypt(&keystore, &password)
            .map_err(|err| format!("keystore {}: {err}", path.display()))?;
        return Ok(secret.to_vec());
    }
    let bytes = cohort_keystore::files::read_secret(path).map_err(|err| err.to_string())?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("secret file {} is not hex text", path.display()))?;
    let text = text.trim();
    let hex = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(hex).map_err(|_| format!("secret file {} is not hex", path.display()))
}

/// An accepted aggregator.
#[derive(Clone, Debug)]
pub enum AggregatorKey {
    /// The signature must recover to this address.
    Ecdsa { address: Address },
    /// Tasks naming `address` must carry a BN254 signature valid under `key`.
    Bn254 {
        address: Address,
        key: Bn254PublicKey,
    },
}

impl AggregatorKey {
    /// From the config: an address, and a G2 public key (hex, 128 bytes) for BN254.
    pub fn parse(address: &str, bn254_public_key: Option<&str>) -> Result<Self, String> {
        let Some(lower) = crate::config::parse_address(address) else {
            return Err(format!("address `{address}` is not 0x + 40 hex"));
        };
        let address: Address = lower
            .parse()
            .map_err(|_| format!("address `{address}` is not 0x + 40 hex"))?;
        match bn254_public_key {
            None => Ok(Self::Ecdsa { address }),
            Some(text) => {
                let bytes = hex::decode(text.trim_start_matches("0x"))
                    .map_err(|_| "bn254_public_key is not hex".to_string())?;
                let key = Bn254PublicKey::from_bytes(&bytes)
                    .map_err(|err| format!("bn254_public_key: {err}"))?;
                Ok(Self::Bn254 { address, key })
            }
        }
    }

    fn address(&self) -> &Address {
        match self {
            Self::Ecdsa { address } | Self::Bn254 { address, .. } => address,
        }
    }
}

/// Why an aggregator signature was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AggregatorRefusal {
    /// No configured aggregator has this address.
    Unknown,
    /// The signature does not verify.
    BadSignature(String),
}

/// The task fields the aggregator signs, parsed from the submission.
pub struct SignedTask<'a> {
    pub task_id: B256,
    pub avs: Address,
    /// This executor's own configured address (never the request's).
    pub executor: Address,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub task_block_number: u64,
    pub payload: &'a [u8],
}

/// Checks the aggregator's signature over the 224-byte task message.
pub fn verify_aggregator(
    keys: &[AggregatorKey],
    aggregator: &Address,
    task: &SignedTask<'_>,
    signature: &[u8],
) -> Result<(), AggregatorRefusal> {
    let Some(key) = keys.iter().find(|key| key.address() == aggregator) else {
        return Err(AggregatorRefusal::Unknown);
    };
    let fields = TaskFields {
        task_id: task.task_id,
        avs: task.avs,
        executor: task.executor,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        payload: task.payload,
    };
    let result = match key {
        AggregatorKey::Ecdsa { address } => {
            cohort_avs_crypto::verify_aggregator_ecdsa(&fields, signature, address)
        }
        AggregatorKey::Bn254 { key, .. } => {
            cohort_avs_crypto::verify_aggregator_bn254(&fields, signature, key)
        }
    };
    result.map_err(|err| AggregatorRefusal::BadSignature(err.to_string()))
}
