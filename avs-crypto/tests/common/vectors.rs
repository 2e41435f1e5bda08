//! The cross-implementation vector document, shared by `examples/vectors.rs` (which prints one
//! signed by this crate) and `tests/python_vectors.rs` (which checks one signed by the Python
//! implementation in tests/python/hourglass_crypto.py). The Python side reads and writes the
//! same schema.
//!
//! A document holds its inputs (test keys, task fields, outputs, tokens) and everything derived
//! from them: messages, digests and signatures, all `0x` hex. Checking a document means
//! rebuilding it from its inputs and requiring every byte to match, then running the verifiers
//! on its signatures (and on tampered copies, which must fail).

#![allow(dead_code)] // each includer uses a part

use alloy_primitives::{Address, B256, hex};
use cohort_avs_crypto::{
    AuthFields, Bn254Key, Bn254PublicKey, EcdsaKey, Eip712Domain, OperatorKey, ResultFields,
    TaskFields, aggregator_digest, aggregator_message, auth_bytes, bn254_certificate_digest,
    challenge_digest, ecdsa_certificate_digest, message_hash, sign_aggregator_bn254,
    sign_aggregator_ecdsa, sign_challenge_bn254, sign_challenge_ecdsa, verify_aggregator_bn254,
    verify_aggregator_ecdsa, verify_auth_bn254, verify_auth_ecdsa, verify_challenge_bn254,
    verify_challenge_ecdsa, verify_result_bn254, verify_result_ecdsa,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    pub source: String,
    pub keys: Keys,
    pub domain: Domain,
    pub tasks: Vec<Task>,
    pub challenges: Vec<Challenge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    pub operator_ecdsa_secret: String,
    pub operator_address: String,
    pub operator_bn254_secret: String,
    pub operator_bn254_public: String,
    pub aggregator_ecdsa_secret: String,
    pub aggregator_address: String,
    pub aggregator_bn254_secret: String,
    pub aggregator_bn254_public: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    pub version: String,
    pub verifying_contract: String,
    pub separator: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    // inputs
    pub task_id: String,
    pub avs: String,
    pub executor: String,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub task_block_number: u64,
    pub payload: String,
    pub output: String,
    // derived
    pub aggregator_message: String,
    pub aggregator_digest: String,
    pub aggregator_signature_ecdsa: String,
    pub aggregator_signature_bn254: String,
    pub message_hash: String,
    pub bn254_certificate_digest: String,
    pub result_signature_bn254: String,
    pub auth_bytes_bn254: String,
    pub auth_signature_bn254: String,
    pub ecdsa_certificate_digest: String,
    pub result_signature_ecdsa: String,
    pub auth_bytes_ecdsa: String,
    pub auth_signature_ecdsa: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub token: String,
    pub digest: String,
    pub signature: String,
    pub signature_bn254: String,
}

/// What a document is built from.
pub struct Inputs {
    pub source: String,
    pub operator_ecdsa_secret: Vec<u8>,
    pub operator_bn254_secret: Vec<u8>,
    pub aggregator_ecdsa_secret: Vec<u8>,
    pub aggregator_bn254_secret: Vec<u8>,
    pub domain_name: String,
    pub domain_version: String,
    pub verifying_contract: Address,
    pub tasks: Vec<TaskInput>,
    pub tokens: Vec<String>,
}

pub struct TaskInput {
    pub task_id: B256,
    pub avs: Address,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub task_block_number: u64,
    pub payload: Vec<u8>,
    pub output: Vec<u8>,
}

fn h(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(bytes))
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

pub fn build(inputs: &Inputs) -> Doc {
    let op = EcdsaKey::from_bytes(&inputs.operator_ecdsa_secret).expect("operator ECDSA key");
    let op_bn = Bn254Key::from_be_bytes(&inputs.operator_bn254_secret).expect("operator BN254 key");
    let agg = EcdsaKey::from_bytes(&inputs.aggregator_ecdsa_secret).expect("aggregator ECDSA key");
    let agg_bn =
        Bn254Key::from_be_bytes(&inputs.aggregator_bn254_secret).expect("aggregator BN254 key");
    let domain = Eip712Domain {
        name: inputs.domain_name.clone(),
        version: inputs.domain_version.clone(),
        verifying_contract: inputs.verifying_contract,
    };
    let tasks = inputs
        .tasks
        .iter()
        .map(|t| {
            let fields = TaskFields {
                task_id: t.task_id,
                avs: t.avs,
                executor: op.address(),
                operator_set_id: t.operator_set_id,
                reference_timestamp: t.reference_timestamp,
                task_block_number: t.task_block_number,
                payload: &t.payload,
            };
            let mh = message_hash(&t.task_id, &t.output);
            // The one-call API the supervisor uses; its pieces are checked in the unit tests.
            let result_fields = ResultFields {
                task_id: t.task_id,
                avs: t.avs,
                operator: op.address(),
                operator_set_id: t.operator_set_id,
                reference_timestamp: t.reference_timestamp,
                output: &t.output,
            };
            let signed_bn = OperatorKey::Bn254(op_bn.clone()).sign_result(&result_fields);
            let signed_ec = OperatorKey::Ecdsa {
                key: op.clone(),
                domain: domain.clone(),
            }
            .sign_result(&result_fields);
            let result_bn = signed_bn.result_signature;
            let result_ec = signed_ec.result_signature;
            let auth_bn = auth_of(t, op.address(), &result_bn);
            let auth_ec = auth_of(t, op.address(), &result_ec);
            Task {
                task_id: h(t.task_id),
                avs: h(t.avs),
                executor: h(op.address()),
                operator_set_id: t.operator_set_id,
                reference_timestamp: t.reference_timestamp,
                task_block_number: t.task_block_number,
                payload: h(&t.payload),
                output: h(&t.output),
                aggregator_message: h(aggregator_message(&fields)),
                aggregator_digest: h(aggregator_digest(&fields)),
                aggregator_signature_ecdsa: h(sign_aggregator_ecdsa(&agg, &fields)),
                aggregator_signature_bn254: h(sign_aggregator_bn254(&agg_bn, &fields)),
                message_hash: h(mh),
                bn254_certificate_digest: h(bn254_certificate_digest(t.reference_timestamp, &mh)),
                result_signature_bn254: h(&result_bn),
                auth_bytes_bn254: h(auth_bytes(&auth_bn)),
                auth_signature_bn254: h(signed_bn.auth_signature),
                ecdsa_certificate_digest: h(ecdsa_certificate_digest(
                    &domain,
                    t.reference_timestamp,
                    &mh,
                )),
                result_signature_ecdsa: h(&result_ec),
                auth_bytes_ecdsa: h(auth_bytes(&auth_ec)),
                auth_signature_ecdsa: h(signed_ec.auth_signature),
            }
        })
        .collect();
    let challenges = inputs
        .tokens
        .iter()
        .map(|token| Challenge {
            token: token.clone(),
            digest: h(challenge_digest(token)),
            signature: h(sign_challenge_ecdsa(&op, token)),
            signature_bn254: h(sign_challenge_bn254(&op_bn, token)),
        })
        .collect();
    Doc {
        source: inputs.source.clone(),
        keys: Keys {
            operator_ecdsa_secret: h(&inputs.operator_ecdsa_secret),
            operator_address: h(op.address()),
            operator_bn254_secret: h(&inputs.operator_bn254_secret),
            operator_bn254_public: h(op_bn.public_key().to_bytes()),
            aggregator_ecdsa_secret: h(&inputs.aggregator_ecdsa_secret),
            aggregator_address: h(agg.address()),
            aggregator_bn254_secret: h(&inputs.aggregator_bn254_secret),
            aggregator_bn254_public: h(agg_bn.public_key().to_bytes()),
        },
        domain: Domain {
            name: domain.name.clone(),
            version: domain.version.clone(),
            verifying_contract: h(domain.verifying_contract),
            separator: h(domain.separator()),
        },
        tasks,
        challenges,
    }
}

fn auth_of<'a>(t: &TaskInput, operator: Address, result_signature: &'a [u8]) -> AuthFields<'a> {
    AuthFields {
        task_id: t.task_id,
        avs: t.avs,
        operator,
        operator_set_id: t.operator_set_id,
        result_signature,
    }
}

/// The inputs a document was built from.
pub fn inputs_of(doc: &Doc) -> Inputs {
    let addr = |s: &str| Address::from_slice(&unhex(s));
    Inputs {
        source: doc.source.clone(),
        operator_ecdsa_secret: unhex(&doc.keys.operator_ecdsa_secret),
        operator_bn254_secret: unhex(&doc.keys.operator_bn254_secret),
        aggregator_ecdsa_secret: unhex(&doc.keys.aggregator_ecdsa_secret),
        aggregator_bn254_secret: unhex(&doc.keys.aggregator_bn254_secret),
        domain_name: doc.domain.name.clone(),
        domain_version: doc.domain.version.clone(),
        verifying_contract: addr(&doc.domain.verifying_contract),
        tasks: doc
            .tasks
            .iter()
            .map(|t| TaskInput {
                task_id: B256::from_slice(&unhex(&t.task_id)),
                avs: addr(&t.avs),
                operator_set_id: t.operator_set_id,
                reference_timestamp: t.reference_timestamp,
                task_block_number: t.task_block_number,
                payload: unhex(&t.payload),
                output: unhex(&t.output),
            })
            .collect(),
        tokens: doc.challenges.iter().map(|c| c.token.clone()).collect(),
    }
}

/// Runs this crate's verifiers on every signature in `doc` (made by whichever implementation),
/// and on a tampered copy of each, which must be refused. Returns how many signatures verified.
pub fn verify_signatures(doc: &Doc) -> usize {
    let addr = |s: &str| Address::from_slice(&unhex(s));
    let operator = addr(&doc.keys.operator_address);
    let aggregator = addr(&doc.keys.aggregator_address);
    let op_bn = Bn254PublicKey::from_bytes(&unhex(&doc.keys.operator_bn254_public)).unwrap();
    let agg_bn = Bn254PublicKey::from_bytes(&unhex(&doc.keys.aggregator_bn254_public)).unwrap();
    let domain = Eip712Domain {
        name: doc.domain.name.clone(),
        version: doc.domain.version.clone(),
        verifying_contract: addr(&doc.domain.verifying_contract),
    };
    let tamper = |sig: &[u8]| {
        let mut bad = sig.to_vec();
        bad[7] ^= 0x40;
        bad
    };
    let mut verified = 0;
    for t in &doc.tasks {
        let payload = unhex(&t.payload);
        let fields = TaskFields {
            task_id: B256::from_slice(&unhex(&t.task_id)),
            avs: addr(&t.avs),
            executor: addr(&t.executor),
            operator_set_id: t.operator_set_id,
            reference_timestamp: t.reference_timestamp,
            task_block_number: t.task_block_number,
            payload: &payload,
        };
        let mh = B256::from_slice(&unhex(&t.message_hash));
        let ts = t.reference_timestamp;

        let sig = unhex(&t.aggregator_signature_ecdsa);
        verify_aggregator_ecdsa(&fields, &sig, &aggregator).expect("aggregator ECDSA");
        assert!(verify_aggregator_ecdsa(&fields, &tamper(&sig), &aggregator).is_err());
        let sig = unhex(&t.aggregator_signature_bn254);
        verify_aggregator_bn254(&fields, &sig, &agg_bn).expect("aggregator BN254");
        assert!(verify_aggregator_bn254(&fields, &tamper(&sig), &agg_bn).is_err());

        let result_bn = unhex(&t.result_signature_bn254);
        verify_result_bn254(&op_bn, ts, &mh, &result_bn).expect("result BN254");
        assert!(verify_result_bn254(&op_bn, ts, &mh, &tamper(&result_bn)).is_err());
        let result_ec = unhex(&t.result_signature_ecdsa);
        verify_result_ecdsa(&operator, &domain, ts, &mh, &result_ec).expect("result ECDSA");
        assert!(verify_result_ecdsa(&operator, &domain, ts, &mh, &tamper(&result_ec)).is_err());

        for (result, auth_sig, bn) in [
            (&result_bn, &t.auth_signature_bn254, true),
            (&result_ec, &t.auth_signature_ecdsa, false),
        ] {
            let auth = AuthFields {
                task_id: fields.task_id,
                avs: fields.avs,
                operator,
                operator_set_id: fields.operator_set_id,
                result_signature: result,
            };
            let sig = unhex(auth_sig);
            if bn {
                verify_auth_bn254(&op_bn, &auth, &sig).expect("auth BN254");
                assert!(verify_auth_bn254(&op_bn, &auth, &tamper(&sig)).is_err());
            } else {
                verify_auth_ecdsa(&auth, &sig).expect("auth ECDSA");
                assert!(verify_auth_ecdsa(&auth, &tamper(&sig)).is_err());
            }
        }
        verified += 6;
    }
    for c in &doc.challenges {
        let sig = unhex(&c.signature);
        verify_challenge_ecdsa(&c.token, &sig, &operator).expect("challenge");
        assert!(verify_challenge_ecdsa(&c.token, &tamper(&sig), &operator).is_err());
        let sig = unhex(&c.signature_bn254);
        verify_challenge_bn254(&c.token, &sig, &op_bn).expect("challenge BN254");
        assert!(verify_challenge_bn254(&c.token, &tamper(&sig), &op_bn).is_err());
        verified += 2;
    }
    verified
}

/// Rebuilds `doc` from its inputs with this crate and returns every field that differs, as
/// `path: theirs != ours`.
pub fn differences(doc: &Doc) -> Vec<String> {
    let ours = build(&inputs_of(doc));
    let theirs = serde_json::to_value(doc).unwrap();
    let ours = serde_json::to_value(&ours).unwrap();
    let mut out = Vec::new();
    diff("", &theirs, &ours, &mut out);
    out
}

fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                if k == "source" {
                    continue;
                }
                match y.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k}: missing on our side")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if a != b => out.push(format!("{path}: theirs {a} != ours {b}")),
        _ => {}
    }
}
