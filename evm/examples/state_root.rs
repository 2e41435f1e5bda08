//! State-root cost per block as the state grows: blocks of transfers to new accounts are
//! applied to a `MemoryState` up to 100,000 accounts, and each block's apply and state root
//! are timed. Wall-clock timing belongs in a benchmark, not a test (the machine is shared).
//!
//! `cargo run --release -p cohort-evm --example state_root [accounts] [per_block]`

use alloy_primitives::{Address, B256, U256, keccak256};
use cohort_evm::{AccountChange, AccountInfo, MemoryState, StateChanges, StateStore};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let target: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let per_block: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(400);
    let empty_code = keccak256([]);
    let sender = Address::repeat_byte(0x89);
    let mut state = MemoryState::default();
    let mut nonce = 0u64;
    let mut next_account = 0u64;
    let mut report_at = 1_000;
    println!("accounts  block apply+root (ms)  root only (ms)");
    while state.len() < target {
        // One block: the sender pays `per_block` new recipients (a transfer each).
        let mut accounts: Vec<AccountChange> = (0..per_block)
            .map(|_| {
                next_account += 1;
                let address = Address::from_slice(&keccak256(next_account.to_be_bytes())[..20]);
                AccountChange {
                    address,
                    info: Some(AccountInfo {
                        nonce: 0,
                        balance: U256::from(1_000),
                        code_hash: empty_code,
                    }),
                    wipe_storage: false,
                    storage: Vec::new(),
                }
            })
            .collect();
        nonce += per_block as u64;
        accounts.push(AccountChange {
            address: sender,
            info: Some(AccountInfo {
                nonce,
                balance: U256::MAX - U256::from(nonce),
                code_hash: empty_code,
            }),
            wipe_storage: false,
            storage: Vec::new(),
        });
        accounts.sort_unstable_by_key(|change| change.address);
        let changes = StateChanges {
            accounts,
            codes: Vec::new(),
        };
        // What a block costs the engine: a child state (a clone of the parent's), the
        // changes applied, the root taken.
        let started = Instant::now();
        let mut child = state.clone();
        child.apply(&changes);
        let root_started = Instant::now();
        let root: B256 = child.state_root();
        let done = Instant::now();
        state = child;
        if state.len() >= report_at || state.len() >= target {
            println!(
                "{:>8}  {:>21.2}  {:>14.3}   (root {root})",
                state.len(),
                (done - started).as_secs_f64() * 1e3,
                (done - root_started).as_secs_f64() * 1e3,
            );
            report_at *= 10;
        }
    }
}
