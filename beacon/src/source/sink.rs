//! The sink side of the API source: signed objects published to every beacon node, each
//! role through its own endpoint and fork-specific encoding.

use super::*;

impl<E: Clock + Send + Sync + 'static> DutySink for ApiSource<E> {
    async fn submit_attestations(
        &self,
        attestations: Vec<SignedAttestation>,
    ) -> Result<(), SinkError> {
        let Some(first) = attestations.first() else {
            return Ok(());
        };
        let slot = first.data.slot;
        let count = attestations.len();
        let result = if self.is_electra(slot) {
            let body: Vec<api::SingleAttestationJson> = attestations
                .iter()
                .map(|attestation| api::SingleAttestationJson {
                    committee_index: attestation.duty.committee_index,
                    attester_index: attestation.duty.validator_index,
                    data: attestation.data.into(),
                    signature: keys::signature_bytes(&attestation.signature),
                })
                .collect();
            let headers = self.version_header(slot);
            self.publish_json(
                "attestations",
                "beacon/pool/attestations_v2",
                "/eth/v2/beacon/pool/attestations",
                &body,
                headers,
            )
            .await
        } else {
            let body: Vec<api::AttestationJson> = attestations
                .iter()
                .map(|attestation| {
                    let duty = &attestation.duty;
                    let mut bits = vec![false; duty.committee_length as usize];
                    if let Some(bit) = bits.get_mut(duty.validator_committee_index as usize) {
                        *bit = true;
                    }
                    api::AttestationJson {
                        aggregation_bits: api::bitlist_to_bytes(&bits),
                        data: attestation.data.into(),
                        signature: keys::signature_bytes(&attestation.signature),
                    }
                })
                .collect();
            self.publish_json(
                "attestations",
                "beacon/pool/attestations",
                "/eth/v1/beacon/pool/attestations",
                &body,
                HeaderMap::new(),
            )
            .await
        };
        match result {
            Ok(accepted) => {
                debug!(slot, count, nodes = accepted, "attestations published");
                for _ in 0..count {
                    self.counted("attestation");
                }
                Ok(())
            }
            Err(err) => Err(SinkError::Refused(err)),
        }
    }

    async fn submit_block(&self, block: SignedBlock) -> Result<(), SinkError> {
        let slot = block.proposal.header.slot;
        let body = blocks::signed_json(&block.proposal, &keys::signature_bytes(&block.signature))
            .map_err(SinkError::Refused)?;
        let headers = self.version_header(slot);
        let result = self
            .nodes
            .publish("the block", |node| {
                let (body, headers) = (body.clone(), headers.clone());
                async move {
                    match node
                        .submit_raw(
                            "beacon/blocks_v2",
                            "/eth/v2/beacon/blocks",
                            body.clone(),
                            headers.clone(),
                        )
                        .await
                    {
                        Err(err) if err.is_missing_endpoint() => {
                            node.submit_raw("beacon/blocks", "/eth/v1/beacon/blocks", body, headers)
                                .await
                        }
                        other => other,
                    }
                }
            })
            .await;
        match result {
            Ok(accepted) => {
                info!(slot, nodes = accepted, "block published");
                self.counted("block");
                Ok(())
            }
            Err(err) => Err(SinkError::Refused(err)),
        }
    }

    async fn submit_sync_committee_messages(
        &self,
        messages: Vec<SignedSyncCommitteeMessage>,
    ) -> Result<(), SinkError> {
        if messages.is_empty() {
            return Ok(());
        }
        let count = messages.len();
        let body: Vec<api::SyncCommitteeMessageJson> = messages
            .iter()
            .map(|message| api::SyncCommitteeMessageJson {
                slot: message.slot,
                beacon_block_root: message.beacon_block_root,
                validator_index: message.validator_index,
                signature: keys::signature_bytes(&message.signature),
            })
            .collect();
        self.publish_json(
            "sync committee messages",
            "beacon/pool/sync_committees",
            "/eth/v1/beacon/pool/sync_committees",
            &body,
            HeaderMap::new(),
        )
        .await
        .map_err(SinkError::Refused)?;
        for _ in 0..count {
            self.counted("sync_committee_message");
        }
        Ok(())
    }

    async fn submit_contributions(
        &self,
        contributions: Vec<SignedContributionAndProof>,
    ) -> Result<(), SinkError> {
        if contributions.is_empty() {
            return Ok(());
        }
        // Nodes take a contribution only in its own slot; one that finished after it is a
        // missed duty, reported as such, not a submission for the node to reject.
        let current = self.clock.slot_at(self.context.current());
        let (contributions, late): (Vec<_>, Vec<_>) = contributions
            .into_iter()
            .partition(|signed| Some(signed.contribution.slot) >= current);
        if contributions.is_empty() {
            return Err(SinkError::Refused(format!(
                "{} contributions were ready only after their slot ended; not published",
                late.len()
            )));
        }
        if !late.is_empty() {
            warn!(
                late = late.len(),
                "contributions ready only after their slot ended; not published"
            );
        }
        let count = contributions.len();
        let body: Vec<api::Signed<api::ContributionAndProofJson>> = contributions
            .iter()
            .map(|signed| api::Signed {
                message: api::ContributionAndProofJson {
                    aggregator_index: signed.aggregator_index,
                    contribution: api::ContributionJson {
                        slot: signed.contribution.slot,
                        beacon_block_root: signed.contribution.beacon_block_root,
                        subcommittee_index: signed.contribution.subcommittee_index,
                        aggregation_bits: api::bitvector_to_bytes(
                            &signed.contribution.aggregation_bits,
                        ),
                        signature: signed.contribution.signature,
                    },
                    selection_proof: keys::signature_bytes(&signed.selection_proof),
                },
                signature: keys::signature_bytes(&signed.signature),
            })
            .collect();
        self.publish_json(
            "sync committee contributions",
            "validator/contribution_and_proofs",
            "/eth/v1/validator/contribution_and_proofs",
            &body,
            HeaderMap::new(),
        )
        .await
        .map_err(SinkError::Refused)?;
        for _ in 0..count {
            self.counted("contribution");
        }
        Ok(())
    }

    async fn submit_aggregate(&self, aggregate: SignedAggregate) -> Result<(), SinkError> {
        let slot = aggregate.aggregate.data.slot;
        let message = api::AggregateAndProofJson {
            aggregator_index: aggregate.aggregator_index,
            aggregate: api::AttestationJson {
                aggregation_bits: api::bitlist_to_bytes(&aggregate.aggregate.aggregation_bits),
                data: aggregate.aggregate.data.into(),
                signature: aggregate.aggregate.signature,
            },
            selection_proof: keys::signature_bytes(&aggregate.selection_proof),
        };
        let body = vec![api::Signed {
            message,
            signature: keys::signature_bytes(&aggregate.signature),
        }];
        if self.is_electra(slot) {
            return Err(SinkError::Refused(
                "Electra aggregates need committee bits, which this cluster's aggregate does not \
                 carry yet"
                    .into(),
            ));
        }
        let result = self
            .publish_json(
                "the aggregate",
                "validator/aggregate_and_proofs",
                "/eth/v1/validator/aggregate_and_proofs",
                &body,
                HeaderMap::new(),
            )
            .await;
        match result {
            Ok(_) => {
                self.counted("aggregate");
                Ok(())
            }
            Err(err) => Err(SinkError::Refused(err)),
        }
    }

    async fn submit_voluntary_exit(
        &self,
        exit: cohort_ingress::exits::SignedVoluntaryExit,
    ) -> Result<(), SinkError> {
        let body = serde_json::json!({
            "message": {
                "epoch": exit.epoch.to_string(),
                "validator_index": exit.validator_index.to_string(),
            },
            "signature": api::hex(&keys::signature_bytes(&exit.signature)),
        });
        self.publish_json(
            "the voluntary exit",
            "beacon/pool/voluntary_exits",
            "/eth/v1/beacon/pool/voluntary_exits",
            &body,
            HeaderMap::new(),
        )
        .await
        .map_err(SinkError::Refused)?;
        self.counted("voluntary_exit");
        Ok(())
    }
}
