//! The embedded engine and a real execution client (EthereumJS 0.10.5) as two operators of one
//! mixed cluster would use them: one genesis file, blocks built in turn by each with
//! transactions sent to it, every block VALID to the other with the same hash, and both
//! finalizing the same chain.
//!
//! ```text
//! ./scripts/ethereumjs.sh cargo test -p cohort-engine --test embedded_ethereumjs -- --nocapture
//! ```
//!
//! Without the script's variables the test says it was skipped and passes.

use cohort_engine::{
    Address, B256, BlockTag, ExecutionEngine, ExecutionPayloadV3, ExecutionTip, ForkchoiceState,
    PayloadAttributes, PayloadStatusEnum, U256,
    embedded::{self, EmbeddedEngine},
    remote::{RemoteConfig, RemoteEngine, load_jwt_secret},
};
use cohort_evm::{DEVNET_FUNDED_KEY, Wallet};
use commonware_runtime::{Runner as _, Supervisor as _, tokio as cw_tokio};
use std::time::Duration;

/// Builds on `head` with `engine`'s pool: the payload the leader would propose.
async fn build<X: ExecutionEngine>(
    engine: &X,
    head: ExecutionTip,
    number: u64,
) -> ExecutionPayloadV3 {
    let state = ForkchoiceState {
        head_block_hash: head.hash,
        safe_block_hash: head.hash,
        finalized_block_hash: head.hash,
    };
    let attributes = PayloadAttributes {
        timestamp: head.timestamp + 12,
        prev_randao: B256::repeat_byte(number as u8),
        suggested_fee_recipient: Address::repeat_byte(0xfe),
        withdrawals: Some(Vec::new()),
        parent_beacon_block_root: Some(root(number)),
        ..Default::default()
    };
    let updated = engine
        .forkchoice_updated(state, Some(attributes))
        .await
        .expect("forkchoiceUpdated with attributes");
    let id = updated.payload_id.expect("a build started");
    // EthereumJS fills its payload from its mempool when asked; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.get_payload(id).await.expect("getPayload")
}

fn root(number: u64) -> B256 {
    B256::repeat_byte(0xb0 | (number as u8 & 0x0f))
}

#[test]
fn the_embedded_engine_and_ethereumjs_build_and_finalize_one_chain() {
    let (Ok(url), Ok(jwt)) = (
        std::env::var("COHORT_ENGINE_URL"),
        std::env::var("COHORT_ENGINE_JWT"),
    ) else {
        eprintln!(
            "SKIPPED the_embedded_engine_and_ethereumjs_build_and_finalize_one_chain: \
             COHORT_ENGINE_URL and COHORT_ENGINE_JWT are not set. Run it through \
             ./scripts/ethereumjs.sh cargo test -p cohort-engine --test embedded_ethereumjs"
        );
        return;
    };
    let directory = std::env::temp_dir().join(format!("cohort-mixed-{}", std::process::id()));
    let runner = cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(&directory));
    runner.start(|context| async move {
        let secret = load_jwt_secret(jwt.as_ref()).expect("jwt.hex from the script");
        let remote = RemoteEngine::new(RemoteConfig {
            url,
            timeout: Duration::from_secs(10),
            ..RemoteConfig::new(secret)
        })
        .expect("remote engine");
        let embedded = EmbeddedEngine::init(
            context.child("engine"),
            embedded::Config::devnet("mixed-engine"),
        )
        .await
        .expect("embedded engine");

        // One genesis file, one genesis hash.
        let genesis = remote
            .block_by_number(BlockTag::Number(0))
            .await
            .expect("eth_getBlockByNumber(0)")
            .expect("a genesis");
        assert_eq!(genesis, embedded::devnet_genesis(), "genesis differs");

        let mut wallet = Wallet::new(&DEVNET_FUNDED_KEY, 1337, 0).expect("the devnet key");
        let mut head = genesis;
        for number in 1..=6u64 {
            // Odd blocks are the embedded engine's to build, even ones EthereumJS's; each gets
            // two transfers sent to it, as users send to whichever operator they use.
            let builder_is_embedded = number % 2 == 1;
            for _ in 0..2 {
                let raw = wallet
                    .transfer(
                        Address::repeat_byte(0x40 + number as u8),
                        U256::from(number * 1_000),
                        100_000_000_000,
                        1_000_000_000,
                    )
                    .expect("signs");
                let sent = if builder_is_embedded {
                    embedded.submit_transaction(raw).await
                } else {
                    remote.submit_transaction(raw).await
                };
                sent.expect("the builder takes the transaction");
            }
            let payload = if builder_is_embedded {
                build(&embedded, head, number).await
            } else {
                build(&remote, head, number).await
            };
            let tip = ExecutionTip::of(&payload);
            let inner = &payload.payload_inner.payload_inner;
            assert_eq!(tip.number, number);
            assert_eq!(
                inner.transactions.len(),
                2,
                "block {number} carries the two transfers sent to its builder"
            );
            for (name, status) in [
                (
                    "embedded",
                    embedded.new_payload(payload.clone(), root(number)).await,
                ),
                (
                    "EthereumJS",
                    remote.new_payload(payload.clone(), root(number)).await,
                ),
            ] {
                let status = status.expect("newPayload answers");
                assert_eq!(
                    status.status,
                    PayloadStatusEnum::Valid,
                    "block {number} built by {} is not VALID in the {name} engine: {status:?}",
                    if builder_is_embedded {
                        "the embedded engine"
                    } else {
                        "EthereumJS"
                    },
                );
                assert_eq!(status.latest_valid_hash, Some(tip.hash));
            }
            let state = ForkchoiceState {
                head_block_hash: tip.hash,
                safe_block_hash: tip.hash,
                finalized_block_hash: tip.hash,
            };
            embedded
                .forkchoice_updated(state, None)
                .await
                .expect("the embedded engine finalizes");
            remote
                .forkchoice_updated(state, None)
                .await
                .expect("EthereumJS finalizes");
            println!(
                "block {number}: {} built by {}, {} transactions, state root {}",
                tip.hash,
                if builder_is_embedded {
                    "embedded"
                } else {
                    "EthereumJS"
                },
                inner.transactions.len(),
                inner.state_root
            );
            head = tip;
        }
        let (finalized, state_root) = embedded.finalized().await;
        assert_eq!(finalized, head);
        assert_eq!(
            remote
                .block_by_number(BlockTag::Finalized)
                .await
                .expect("EthereumJS's finalized block"),
            Some(head)
        );
        println!(
            "both finalized block 6 {} with state root {state_root}",
            head.hash
        );
        // The funded account's nonce is 12 in the embedded engine's finalized state.
        let funded = embedded
            .account(&wallet.address())
            .await
            .expect("the funded account");
        assert_eq!(funded.nonce, 12);
    });
    let _ = std::fs::remove_dir_all(&directory);
}
