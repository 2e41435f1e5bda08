//! The byte strings Hourglass hashes and signs: the aggregator's task message, the TaskMailbox
//! message hash, the certificate digests of EigenLayer's certificate verifiers, the auth bytes
//! and the management challenge.
//!
//! Every integer is a big-endian, left-padded 32-byte ABI word, as Solidity's `abi.encode` and
//! Hourglass's `ToSigningBytes` write them.

use alloy_primitives::{Address, B256, keccak256};

/// `keccak256("BN254Certificate(uint32 referenceTimestamp,bytes32 messageHash)")`, the
/// `BN254_CERTIFICATE_TYPEHASH` of EigenLayer's `BN254CertificateVerifierStorage`.
pub const BN254_CERTIFICATE_TYPE: &str =
    "BN254Certificate(uint32 referenceTimestamp,bytes32 messageHash)";

/// `keccak256("ECDSACertificate(uint32 referenceTimestamp,bytes32 messageHash)")`, the
/// `ECDSA_CERTIFICATE_TYPEHASH` of EigenLayer's `ECDSACertificateVerifierStorage`.
pub const ECDSA_CERTIFICATE_TYPE: &str =
    "ECDSACertificate(uint32 referenceTimestamp,bytes32 messageHash)";

/// The EIP-712 domain type of `ECDSACertificateVerifier`: no chain id, so a certificate verifies
/// on every chain the verifier is deployed to (`EIP712_DOMAIN_TYPEHASH_NO_CHAINID`).
pub const EIP712_DOMAIN_NO_CHAIN_ID_TYPE: &str =
    "EIP712Domain(string name,string version,address verifyingContract)";

/// The domain `name` `ECDSACertificateVerifier.domainSeparator()` uses.
pub const EIGENLAYER_DOMAIN_NAME: &str = "EigenLayer";

/// What the aggregator signs for one executor (Hourglass's `TaskSubmissionSignatureData`, message
/// version 1). `executor` must be the executor's *own configured* address, never the one in the
/// request: that is what binds the aggregator's signature to this executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFields<'a> {
    /// The 32 bytes of the `0x…` task id.
    pub task_id: B256,
    /// The AVS the task belongs to.
    pub avs: Address,
    /// The executor (operator) the task was sent to.
    pub executor: Address,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub task_block_number: u64,
    /// The task payload; only its keccak256 enters the message.
    pub payload: &'a [u8],
}

/// The 224-byte message of a task submission: `task_id ‖ avs ‖ executor ‖ operator_set_id ‖
/// reference_timestamp ‖ task_block_number ‖ keccak256(payload)`, each a 32-byte word.
pub fn aggregator_message(task: &TaskFields<'_>) -> [u8; 224] {
    let mut out = [0u8; 224];
    out[0..32].copy_from_slice(task.task_id.as_slice());
    out[32..64].copy_from_slice(&address_word(&task.avs));
    out[64..96].copy_from_slice(&address_word(&task.executor));
    out[96..128].copy_from_slice(&u64_word(task.operator_set_id.into()));
    out[128..160].copy_from_slice(&u64_word(task.reference_timestamp.into()));
    out[160..192].copy_from_slice(&u64_word(task.task_block_number));
    out[192..224].copy_from_slice(keccak256(task.payload).as_slice());
    out
}

/// `keccak256(aggregator_message(task))`: the digest the aggregator signs (Hourglass's signer
/// hashes the message before signing, for both curves).
pub fn aggregator_digest(task: &TaskFields<'_>) -> B256 {
    keccak256(aggregator_message(task))
}

/// The TaskMailbox's `getMessageHash(taskHash, result)`:
/// `keccak256(abi.encode(bytes32 taskHash, bytes output))`. The certificate digests sign this, so
/// every operator that computed the same output signs the same value.
///
/// ABI layout: `taskHash ‖ 0x40 (offset of the bytes) ‖ len(output) ‖ output`, the output
/// right-padded with zeros to a multiple of 32 bytes.
pub fn message_hash(task_id: &B256, output: &[u8]) -> B256 {
    let padded = output.len().div_ceil(32) * 32;
    let mut buf = Vec::with_capacity(96 + padded);
    buf.extend_from_slice(task_id.as_slice());
    buf.extend_from_slice(&u64_word(0x40));
    buf.extend_from_slice(&u64_word(output.len() as u64));
    buf.extend_from_slice(output);
    buf.resize(96 + padded, 0);
    keccak256(&buf)
}

/// The BN254 certificate digest `BN254CertificateVerifier.calculateCertificateDigest`:
/// `keccak256(abi.encode(BN254_CERTIFICATE_TYPEHASH, uint32 referenceTimestamp, bytes32
/// messageHash))`. No EIP-712 prefix: the BN254 verifier hashes exactly this.
pub fn bn254_certificate_digest(reference_timestamp: u32, message_hash: &B256) -> B256 {
    certificate_struct_hash(BN254_CERTIFICATE_TYPE, reference_timestamp, message_hash)
}

/// The EIP-712 domain of an `ECDSACertificateVerifier` deployment (chain-id free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip712Domain {
    /// `"EigenLayer"` for EigenLayer's verifier.
    pub name: String,
    /// The *major* version only: the contract uses the first character of its semver string
    /// (`SemVerMixin._majorVersion()`), so a verifier at `"1.9.0"` signs with `"1"`.
    pub version: String,
    /// The `ECDSACertificateVerifier` proxy address.
    pub verifying_contract: Address,
}

impl Eip712Domain {
    /// The domain of EigenLayer's `ECDSACertificateVerifier` at `verifying_contract`, whose
    /// semver string's major version is `major_version` (e.g. `"1"`).
    pub fn eigenlayer(major_version: &str, verifying_contract: Address) -> Self {
        Self {
            name: EIGENLAYER_DOMAIN_NAME.to_string(),
            version: major_version.to_string(),
            verifying_contract,
        }
    }

    /// `keccak256(abi.encode(EIP712_DOMAIN_TYPEHASH_NO_CHAINID, keccak256(name),
    /// keccak256(version), verifyingContract))`, as `ECDSACertificateVerifier.domainSeparator()`.
    pub fn separator(&self) -> B256 {
        let mut buf = [0u8; 128];
        buf[0..32].copy_from_slice(keccak256(EIP712_DOMAIN_NO_CHAIN_ID_TYPE).as_slice());
        buf[32..64].copy_from_slice(keccak256(self.name.as_bytes()).as_slice());
        buf[64..96].copy_from_slice(keccak256(self.version.as_bytes()).as_slice());
        buf[96..128].copy_from_slice(&address_word(&self.verifying_contract));
        keccak256(buf)
    }
}

/// The ECDSA certificate digest `ECDSACertificateVerifier.calculateCertificateDigest`:
/// `keccak256("\x19\x01" ‖ domainSeparator ‖ keccak256(abi.encode(ECDSA_CERTIFICATE_TYPEHASH,
/// uint32 referenceTimestamp, bytes32 messageHash)))`.
pub fn ecdsa_certificate_digest(
    domain: &Eip712Domain,
    reference_timestamp: u32,
    message_hash: &B256,
) -> B256 {
    let struct_hash =
        certificate_struct_hash(ECDSA_CERTIFICATE_TYPE, reference_timestamp, message_hash);
    let mut buf = [0u8; 66];
    buf[0] = 0x19;
    buf[1] = 0x01;
    buf[2..34].copy_from_slice(domain.separator().as_slice());
    buf[34..66].copy_from_slice(struct_hash.as_slice());
    keccak256(buf)
}

/// What the auth signature binds (Hourglass's `AuthSignatureData`): the operator's identity to
/// its result signature, so a result signature cannot be replayed under another operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFields<'a> {
    pub task_id: B256,
    pub avs: Address,
    /// The signing operator's own address.
    pub operator: Address,
    pub operator_set_id: u32,
    /// The result signature exactly as sent (64 or 65 bytes); only its keccak256 is signed.
    pub result_signature: &'a [u8],
}

/// The 160-byte auth message: `task_id ‖ avs ‖ operator ‖ operator_set_id ‖
/// keccak256(result_signature)`, each a 32-byte word.
pub fn auth_bytes(auth: &AuthFields<'_>) -> [u8; 160] {
    let mut out = [0u8; 160];
    out[0..32].copy_from_slice(auth.task_id.as_slice());
    out[32..64].copy_from_slice(&address_word(&auth.avs));
    out[64..96].copy_from_slice(&address_word(&auth.operator));
    out[96..128].copy_from_slice(&u64_word(auth.operator_set_id.into()));
    out[128..160].copy_from_slice(keccak256(auth.result_signature).as_slice());
    out
}

/// `keccak256(auth_bytes(auth))`: the digest the auth signature is over.
pub fn auth_digest(auth: &AuthFields<'_>) -> B256 {
    keccak256(auth_bytes(auth))
}

/// The digest a management-API caller signs for a challenge token:
/// `keccak256(keccak256(token as ASCII))`. Hourglass's client hashes the token
/// (`ConstructSignedMessage`) and its signer hashes again before signing.
pub fn challenge_digest(token: &str) -> B256 {
    keccak256(keccak256(token.as_bytes()))
}

fn certificate_struct_hash(type_string: &str, reference_timestamp: u32, hash: &B256) -> B256 {
    let mut buf = [0u8; 96];
    buf[0..32].copy_from_slice(keccak256(type_string).as_slice());
    buf[32..64].copy_from_slice(&u64_word(reference_timestamp.into()));
    buf[64..96].copy_from_slice(hash.as_slice());
    keccak256(buf)
}

fn address_word(address: &Address) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(address.as_slice());
    word
}

fn u64_word(value: u64) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&value.to_be_bytes());
    word
}

#[cfg(test)]
mod tests;
