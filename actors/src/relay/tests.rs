use super::{Config, init};
use cohort_engine::{
    Address, AlloyBytes, U256,
    embedded::{Config as EngineConfig, EmbeddedEngine},
};
use cohort_evm::{DEVNET_FUNDED_KEY, Wallet};
use cohort_ingress::transactions::Mailbox;
use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::{Recipients, Sender as _, simulated};
use commonware_runtime::{Clock as _, Quota, Runner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, ordered::Set};
use std::time::Duration;

const OPERATORS: usize = 4;

struct Cluster {
    /// Operators 0, 1 and 2 run the relay; operator 3 only has a raw sender (a liar).
    mailboxes: Vec<Mailbox>,
    engines: Vec<EmbeddedEngine<deterministic::Context>>,
    liar: simulated::Sender<ed25519::PublicKey, deterministic::Context>,
}

async fn start(context: &deterministic::Context) -> Cluster {
    let keys: Vec<ed25519::PrivateKey> = (0..OPERATORS as u64)
        .map(ed25519::PrivateKey::from_seed)
        .collect();
    let operators: Set<ed25519::PublicKey> =
        Set::from_iter_dedup(keys.iter().map(|key| key.public_key()));
    let oracle =
        crate::testing::fully_connected(context, &operators, 1 << 18, Duration::from_millis(20))
            .await;
    let quota = Quota::per_second(NZU32!(1_000));
    let mut mailboxes = Vec::new();
    let mut engines = Vec::new();
    let mut liar = None;
    for (index, key) in keys.iter().enumerate() {
        let (sender, receiver) = oracle
            .control(key.public_key())
            .register(0, quota)
            .await
            .expect("channel registers");
        if index == 3 {
            liar = Some(sender);
            continue;
        }
        let engine = EmbeddedEngine::init(
            context.child("engine").with_attribute("operator", index),
            EngineConfig::devnet(format!("relay-engine-{index}")),
        )
        .await
        .expect("engine opens");
        let (actor, mailbox) = init(
            context.child("relay").with_attribute("operator", index),
            Config {
                engine: engine.clone(),
                mailbox_size: 16,
            },
        );
        actor.start(sender, receiver);
        mailboxes.push(mailbox);
        engines.push(engine);
    }
    Cluster {
        mailboxes,
        engines,
        liar: liar.expect("operator 3 registered"),
    }
}

fn transfer(wallet: &mut Wallet) -> AlloyBytes {
    wallet
        .transfer(Address::repeat_byte(0xbe), U256::from(1), 10_000_000_000, 1)
        .expect("signs")
}

#[test]
fn a_transaction_sent_to_one_operator_reaches_every_pool_once() {
    deterministic::Runner::default().start(|context| async move {
        let cluster = start(&context).await;
        let mut wallet = Wallet::new(&DEVNET_FUNDED_KEY, 1337, 0).unwrap();
        let first = transfer(&mut wallet);
        let hash = cluster.mailboxes[0]
            .submit(first.clone())
            .await
            .expect("the relay runs")
            .expect("pooled");
        context.sleep(Duration::from_millis(200)).await;
        for engine in &cluster.engines {
            assert_eq!(engine.pool_len().await, 1);
        }
        // Sent again to another operator: refused there as known, and nothing doubles.
        let again = cluster.mailboxes[1]
            .submit(first)
            .await
            .expect("the relay runs");
        assert_eq!(again, Err(cohort_engine::TransactionRefused::Known));
        // A transaction the pool refuses is answered with why and never sent on.
        let refused = cluster.mailboxes[2]
            .submit(AlloyBytes::from_static(b"\x02\xff"))
            .await
            .expect("the relay runs")
            .expect_err("garbage is refused");
        assert!(
            matches!(&refused, cohort_engine::TransactionRefused::Refused(reason)
                if reason.starts_with("transaction does not decode")),
            "{refused}"
        );
        context.sleep(Duration::from_millis(200)).await;
        for engine in &cluster.engines {
            assert_eq!(engine.pool_len().await, 1);
        }
        assert_eq!(hash.len(), 32);
    });
}

#[test]
fn a_peer_s_garbage_and_oversized_transactions_change_no_pool() {
    deterministic::Runner::default().start(|context| async move {
        let mut cluster = start(&context).await;
        let mut wallet = Wallet::new(&DEVNET_FUNDED_KEY, 1337, 0).unwrap();
        let good = transfer(&mut wallet);
        for junk in [
            vec![0u8; 0],
            vec![0x02, 0xff, 0x00],
            vec![0xc0; 200 * 1024],
            good[..good.len() - 1].to_vec(),
        ] {
            cluster.liar.send(Recipients::All, junk, false);
        }
        // A peer's valid transaction is taken (never punished or lost for who sent it).
        cluster.liar.send(Recipients::All, good.to_vec(), false);
        context.sleep(Duration::from_millis(500)).await;
        for engine in &cluster.engines {
            assert_eq!(engine.pool_len().await, 1);
        }
        let metrics = commonware_runtime::Metrics::encode(&context);
        assert!(metrics.contains("received_refused_total"), "{metrics}");
    });
}
