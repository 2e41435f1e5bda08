//! SSZ roots of every container, checked against roots computed independently in Python with
//! remerkleable (`tests/vectors/gen.py`, which writes `tests/vectors/roots.json`): for each
//! preset, a default instance and two random ones of each container, given in the Beacon
//! API's JSON shape. Each is parsed with this crate's type for that container and preset, hashed
//! with `tree_hash`, and compared; blocks also go through `block_header`/`body_root`, the path
//! the client uses. The JSON also round-trips (serialize, parse, same root).

use cohort_eth_types::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tree_hash::TreeHash;

fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("0x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses `json` as `T`, compares its root, and checks that serializing gives JSON that parses
/// to the same root.
fn check<T: DeserializeOwned + Serialize + TreeHash>(case: &Value) -> Result<(), String> {
    let value: T = serde_json::from_value(case["json"].clone()).map_err(|e| e.to_string())?;
    let root = hex(&value.tree_hash_root().0);
    let expected = case["root"].as_str().ok_or("no root")?;
    if root != expected {
        return Err(format!("root {root}, remerkleable {expected}"));
    }
    let again: T = serde_json::from_value(serde_json::to_value(&value).map_err(|e| e.to_string())?)
        .map_err(|e| format!("round trip: {e}"))?;
    if hex(&again.tree_hash_root().0) != expected {
        return Err("round trip changed the root".into());
    }
    Ok(())
}

fn check_case<P: Preset>(name: &str, case: &Value) -> Result<(), String> {
    match name {
        "Checkpoint" => check::<Checkpoint>(case),
        "AttestationData" => check::<AttestationData>(case),
        "BeaconBlockHeader" => check::<BeaconBlockHeader>(case),
        "SignedBeaconBlockHeader" => check::<SignedBeaconBlockHeader>(case),
        "Eth1Data" => check::<Eth1Data>(case),
        "ProposerSlashing" => check::<ProposerSlashing>(case),
        "IndexedAttestation" => check::<IndexedAttestation<P>>(case),
        "AttesterSlashing" => check::<AttesterSlashing<P>>(case),
        "Attestation" => check::<Attestation<P>>(case),
        "DepositData" => check::<DepositData>(case),
        "Deposit" => check::<Deposit>(case),
        "VoluntaryExit" => check::<VoluntaryExit>(case),
        "SignedVoluntaryExit" => check::<SignedVoluntaryExit>(case),
        "AggregateAndProof" => check::<AggregateAndProof<P>>(case),
        "SignedAggregateAndProof" => check::<SignedAggregateAndProof<P>>(case),
        "SyncAggregate" => check::<SyncAggregate<P>>(case),
        "SyncCommitteeMessage" => check::<SyncCommitteeMessage>(case),
        "SyncCommitteeContribution" => check::<SyncCommitteeContribution<P>>(case),
        "ContributionAndProof" => check::<ContributionAndProof<P>>(case),
        "SignedContributionAndProof" => check::<SignedContributionAndProof<P>>(case),
        "SyncAggregatorSelectionData" => check::<SyncAggregatorSelectionData>(case),
        "ExecutionPayloadBellatrix" => check::<ExecutionPayloadBellatrix<P>>(case),
        "Withdrawal" => check::<Withdrawal>(case),
        "BlsToExecutionChange" => check::<BlsToExecutionChange>(case),
        "SignedBlsToExecutionChange" => check::<SignedBlsToExecutionChange>(case),
        "ExecutionPayloadCapella" => check::<ExecutionPayloadCapella<P>>(case),
        "ExecutionPayloadDeneb" => check::<ExecutionPayloadDeneb<P>>(case),
        "IndexedAttestationElectra" => check::<IndexedAttestationElectra<P>>(case),
        "AttesterSlashingElectra" => check::<AttesterSlashingElectra<P>>(case),
        "AttestationElectra" => check::<AttestationElectra<P>>(case),
        "SingleAttestation" => check::<SingleAttestation>(case),
        "AggregateAndProofElectra" => check::<AggregateAndProofElectra<P>>(case),
        "SignedAggregateAndProofElectra" => check::<SignedAggregateAndProofElectra<P>>(case),
        "DepositRequest" => check::<DepositRequest>(case),
        "WithdrawalRequest" => check::<WithdrawalRequest>(case),
        "ConsolidationRequest" => check::<ConsolidationRequest>(case),
        "ExecutionRequests" => check::<ExecutionRequests<P>>(case),
        "BeaconBlockBodyPhase0" => check::<BeaconBlockBodyPhase0<P>>(case),
        "BeaconBlockBodyAltair" => check::<BeaconBlockBodyAltair<P>>(case),
        "BeaconBlockBodyBellatrix" => check::<BeaconBlockBodyBellatrix<P>>(case),
        "BeaconBlockBodyCapella" => check::<BeaconBlockBodyCapella<P>>(case),
        "BeaconBlockBodyDeneb" => check::<BeaconBlockBodyDeneb<P>>(case),
        "BeaconBlockBodyElectra" => check::<BeaconBlockBodyElectra<P>>(case),
        "ExecutionPayloadHeaderBellatrix" => check::<ExecutionPayloadHeaderBellatrix<P>>(case),
        "ExecutionPayloadHeaderCapella" => check::<ExecutionPayloadHeaderCapella<P>>(case),
        "ExecutionPayloadHeaderDeneb" => check::<ExecutionPayloadHeaderDeneb<P>>(case),
        "BlindedBeaconBlockBodyBellatrix" => check::<BlindedBeaconBlockBodyBellatrix<P>>(case),
        "BlindedBeaconBlockBodyCapella" => check::<BlindedBeaconBlockBodyCapella<P>>(case),
        "BlindedBeaconBlockBodyDeneb" => check::<BlindedBeaconBlockBodyDeneb<P>>(case),
        "BlindedBeaconBlockBodyElectra" => check::<BlindedBeaconBlockBodyElectra<P>>(case),
        block if block.starts_with("BeaconBlock/") || block.starts_with("BlindedBeaconBlock/") => {
            let blinded = block.starts_with("Blinded");
            let fork: Fork = block
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|e: Error| e.to_string())?;
            let json = &case["json"];
            let header = block_header(fork, P::KIND, json).map_err(|e| e.to_string())?;
            let body_root = hex(header.body_root.as_slice());
            if Some(body_root.as_str()) != case["body_root"].as_str() {
                return Err(format!(
                    "body root {body_root}, remerkleable {}",
                    case["body_root"]
                ));
            }
            let root = hex(&block_root(fork, P::KIND, json).map_err(|e| e.to_string())?);
            if Some(root.as_str()) != case["root"].as_str() {
                return Err(format!("block root {root}, remerkleable {}", case["root"]));
            }
            // And as the typed block of that fork.
            match (fork, blinded) {
                (Fork::Bellatrix, true) => {
                    check::<BeaconBlock<BlindedBeaconBlockBodyBellatrix<P>>>(case)
                }
                (Fork::Capella, true) => {
                    check::<BeaconBlock<BlindedBeaconBlockBodyCapella<P>>>(case)
                }
                (Fork::Deneb, true) => check::<BeaconBlock<BlindedBeaconBlockBodyDeneb<P>>>(case),
                (Fork::Electra, true) => {
                    check::<BeaconBlock<BlindedBeaconBlockBodyElectra<P>>>(case)
                }
                (Fork::Fulu, true) => check::<BeaconBlock<BlindedBeaconBlockBodyFulu<P>>>(case),
                (Fork::Phase0 | Fork::Altair, true) => {
                    Err("no blinded body before bellatrix".into())
                }
                (Fork::Phase0, false) => check::<BeaconBlock<BeaconBlockBodyPhase0<P>>>(case),
                (Fork::Altair, false) => check::<BeaconBlock<BeaconBlockBodyAltair<P>>>(case),
                (Fork::Bellatrix, false) => check::<BeaconBlock<BeaconBlockBodyBellatrix<P>>>(case),
                (Fork::Capella, false) => check::<BeaconBlock<BeaconBlockBodyCapella<P>>>(case),
                (Fork::Deneb, false) => check::<BeaconBlock<BeaconBlockBodyDeneb<P>>>(case),
                (Fork::Electra, false) => check::<BeaconBlock<BeaconBlockBodyElectra<P>>>(case),
                (Fork::Fulu, false) => check::<BeaconBlock<BeaconBlockBodyFulu<P>>>(case),
            }
        }
        other => Err(format!("no Rust type for {other}")),
    }
}

#[test]
fn every_container_matches_remerkleable() {
    let text = include_str!("vectors/roots.json");
    let vectors: Value = serde_json::from_str(text).expect("fixture is JSON");
    let cases = vectors["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let preset = case["preset"].as_str().expect("preset");
        let result = match preset.parse::<PresetKind>().expect("preset") {
            PresetKind::Mainnet => check_case::<Mainnet>(name, case),
            PresetKind::Minimal => check_case::<Minimal>(name, case),
        };
        if let Err(e) = result {
            failures.push(format!("{preset} {name} {}: {e}", case["instance"]));
        }
        names.insert((preset.to_string(), name.to_string()));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // 50 containers, 7 blocks and 5 blinded blocks, in both presets; three instances of each,
    // and each full block with an execution payload once more, blinded.
    assert_eq!(names.len(), 2 * 62, "every container in both presets");
    assert_eq!(cases.len(), 3 * 2 * 62 + 3 * 2 * 5);
}
