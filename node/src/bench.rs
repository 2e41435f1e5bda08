//! `cohort bench-signing`: what one operator's CPU spends per validator-duty (sign its share,
//! decode the peers' partials, recover, verify the recovered signature), next to the physical
//! floor of one plain blst sign and verify, and what that makes per slot at a validator count.
//!
//! Wall-clock timing belongs here, outside the actors: simulated time cannot measure CPU.

use cohort_ingress::{
    keys::{self, Partial, Signature},
    partial::{PartialSignature, PartialSignatures, Phase},
    signing::{self, ForkInfo},
};
use commonware_codec::{Decode, Encode};

use std::time::{Duration, Instant};

pub struct Costs {
    pub sign_share: Duration,
    pub decode_partials: Duration,
    pub recover: Duration,
    pub verify: Duration,
    pub floor_sign: Duration,
    pub floor_verify: Duration,
}

impl Costs {
    pub fn per_duty(&self) -> Duration {
        self.sign_share + self.decode_partials + self.recover + self.verify
    }

    pub fn floor(&self) -> Duration {
        self.floor_sign + self.floor_verify
    }
}

/// Measures each step over `samples` validators split t-of-n among `operators`.
pub fn measure(operators: u32, samples: u64) -> Costs {
    let threshold = operators - (operators - 1) / 3;
    let mut rng = commonware_utils::TestRng::new(1);
    let fork = ForkInfo::devnet();
    let root = signing::compute_signing_root([7; 32], fork.domain(signing::DOMAIN_BEACON_ATTESTER));
    let splits: Vec<_> = (0..samples)
        .map(|v| {
            keys::split(&mut rng, &keys::interop_secret(v), operators, threshold)
                .expect("interop keys split")
        })
        .collect();

    // One operator signs its share of every sampled validator.
    let started = Instant::now();
    let own: Vec<Signature> = splits
        .iter()
        .map(|split| keys::sign_partial(&split.shares[0], &root).value)
        .collect();
    let sign_share = started.elapsed();

    // The peers' partials arrive encoded, one message per peer.
    let peer_messages: Vec<Vec<u8>> = (1..threshold as usize)
        .map(|peer| {
            PartialSignatures {
                slot: 1,
                phase: Phase::PostConsensus,
                signatures: splits
                    .iter()
                    .enumerate()
                    .map(|(v, split)| PartialSignature {
                        validator_index: v as u64,
                        signing_root: commonware_cryptography::sha256::Digest(root),
                        signature: keys::sign_partial(&split.shares[peer], &root).value,
                    })
                    .collect(),
            }
            .encode()
            .to_vec()
        })
        .collect();
    let started = Instant::now();
    let decoded: Vec<PartialSignatures> = peer_messages
        .into_iter()
        .map(|bytes| {
            PartialSignatures::decode_cfg(bytes, &(samples as usize)).expect("own encoding decodes")
        })
        .collect();
    let decode_partials = started.elapsed();

    let mut recovered = Vec::with_capacity(samples as usize);
    let mut recover = Duration::ZERO;
    let mut verify = Duration::ZERO;
    for (v, split) in splits.iter().enumerate() {
        let mut partials = vec![Partial {
            index: split.shares[0].index,
            value: own[v],
        }];
        for (peer, message) in decoded.iter().enumerate() {
            partials.push(Partial {
                index: split.shares[peer + 1].index,
                value: message.signatures[v].signature,
            });
        }
        // `keys::recover` recovers and verifies; time the halves apart.
        let started = Instant::now();
        let signature = commonware_cryptography::bls12381::primitives::ops::threshold::recover::<
            commonware_cryptography::bls12381::primitives::variant::MinPk,
            _,
        >(&split.sharing, &partials, &commonware_parallel::Sequential)
        .expect("threshold partials recover");
        recover += started.elapsed();
        let started = Instant::now();
        assert!(keys::verify(&split.public_key(), &root, &signature));
        verify += started.elapsed();
        recovered.push(signature);
    }

    // The floor: one blst sign and one blst verify per validator, nothing else.
    let secrets: Vec<blst::min_pk::SecretKey> = (0..samples)
        .map(|v| {
            let mut ikm = [0u8; 32];
            ikm[..8].copy_from_slice(&v.to_le_bytes());
            blst::min_pk::SecretKey::key_gen(&ikm, &[]).expect("32 bytes of key material")
        })
        .collect();
    let publics: Vec<_> = secrets.iter().map(|s| s.sk_to_pk()).collect();
    let dst = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
    let started = Instant::now();
    let signatures: Vec<_> = secrets.iter().map(|s| s.sign(&root, dst, &[])).collect();
    let floor_sign = started.elapsed();
    let started = Instant::now();
    for (signature, public) in signatures.iter().zip(&publics) {
        assert_eq!(
            signature.verify(true, &root, dst, &[], public, true),
            blst::BLST_ERROR::BLST_SUCCESS
        );
    }
    let floor_verify = started.elapsed();

    let per = |d: Duration| d / samples as u32;
    Costs {
        sign_share: per(sign_share),
        decode_partials: per(decode_partials),
        recover: per(recover),
        verify: per(verify),
        floor_sign: per(floor_sign),
        floor_verify: per(floor_verify),
    }
}
