//! Calls that change nothing, against a block's post-state: what `eth_call` and
//! `eth_estimateGas` answer.
//!
//! As execution clients do, a call without a fee runs with a zero base fee and gas price, so a
//! caller without ether can still read a contract; with a fee, balance and base fee rules apply.
//! The caller's nonce is the state's, so a call never fails on a nonce it cannot know.

use crate::{
    executor::{Executed, Executor},
    state::{Reader, StateStore},
};
use alloy_eips::eip7840::BlobParams;
use alloy_evm::{Evm as _, EvmEnv, EvmFactory as _, eth::EthEvmFactory};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use revm::{
    context::{TxEnv, result::ExecutionResult},
    database::State,
};

/// Gas of the cheapest transaction there is: a transfer.
const TRANSFER_GAS: u64 = 21_000;

/// A call as a JSON-RPC client describes it; absent fields take the usual defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// The zero address when absent.
    pub from: Option<Address>,
    /// A contract creation when absent.
    pub to: Option<Address>,
    /// The block's gas limit when absent (and at most that).
    pub gas: Option<u64>,
    /// A legacy fee; exclusive with the EIP-1559 pair.
    pub gas_price: Option<u128>,
    pub max_fee_per_gas: Option<u128>,
    pub max_priority_fee_per_gas: Option<u128>,
    pub value: U256,
    pub data: Bytes,
}

/// How a call ended, as a receipt would say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Success {
        output: Bytes,
        gas_used: u64,
    },
    /// REVERT, with its data (often an ABI-encoded reason).
    Revert {
        output: Bytes,
        gas_used: u64,
    },
    /// Out of gas, an invalid opcode, a stack error...
    Halt {
        reason: String,
        gas_used: u64,
    },
}

/// Why a call could not run at all, or why its gas cannot be estimated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("both gasPrice and maxFeePerGas given; use one")]
    BothFees,
    #[error("maxPriorityFeePerGas {tip} is above maxFeePerGas {cap}")]
    TipAboveCap { tip: u128, cap: u128 },
    /// The transaction is not valid against the state (funds, intrinsic gas, fee below the
    /// base fee...).
    #[error("{0}")]
    Invalid(String),
    #[error("execution reverted")]
    Reverted { output: Bytes },
    #[error("gas required exceeds {limit}: {reason}")]
    Exceeds { limit: u64, reason: String },
}

impl Executor {
    /// Runs `request` on `block`'s post-state, in `block`'s own block context (number,
    /// timestamp, base fee), the way clients answer a call at a block tag. Nothing is written.
    pub fn call<S: StateStore>(
        &self,
        block: &Executed<S>,
        request: &CallRequest,
    ) -> Result<CallOutcome, CallError> {
        let gas = request
            .gas
            .unwrap_or(block.header.gas_limit)
            .min(block.header.gas_limit);
        self.call_with_gas(block, request, gas)
    }

    /// The least gas with which `request` succeeds on `block`'s post-state (binary search over
    /// real executions, as clients do). A call that reverts or fails with the most gas it may
    /// have says why.
    pub fn estimate_gas<S: StateStore>(
        &self,
        block: &Executed<S>,
        request: &CallRequest,
    ) -> Result<u64, CallError> {
        let mut high = request
            .gas
            .unwrap_or(block.header.gas_limit)
            .min(block.header.gas_limit);
        // With a fee, the caller can pay for only so much gas.
        let fee = request.gas_price.or(request.max_fee_per_gas).unwrap_or(0);
        if fee > 0 {
            let from = request.from.unwrap_or_default();
            let balance = block
                .state
                .account(&from)
                .map_or(U256::ZERO, |account| account.balance);
            let spendable = balance.saturating_sub(request.value) / U256::from(fee);
            high = high.min(u64::try_from(spendable).unwrap_or(u64::MAX));
        }
        let limit = high;
        match self.call_with_gas(block, request, high)? {
            CallOutcome::Success { gas_used, .. } if gas_used == TRANSFER_GAS => {
                return Ok(gas_used);
            }
            CallOutcome::Success { .. } => {}
            CallOutcome::Revert { output, .. } => return Err(CallError::Reverted { output }),
            CallOutcome::Halt { reason, .. } => return Err(CallError::Exceeds { limit, reason }),
        }
        // `low` fails (or is below the least any transaction needs), `high` succeeds.
        let mut low = TRANSFER_GAS - 1;
        while low + 1 < high {
            let middle = low + (high - low) / 2;
            match self.call_with_gas(block, request, middle) {
                Ok(CallOutcome::Success { .. }) => high = middle,
                _ => low = middle,
            }
        }
        Ok(high)
    }

    fn call_with_gas<S: StateStore>(
        &self,
        block: &Executed<S>,
        request: &CallRequest,
        gas: u64,
    ) -> Result<CallOutcome, CallError> {
        let (gas_price, priority_fee, tx_type) = match (
            request.gas_price,
            request.max_fee_per_gas,
            request.max_priority_fee_per_gas,
        ) {
            (Some(_), Some(_), _) => return Err(CallError::BothFees),
            (Some(price), None, _) => (price, None, 0),
            (None, Some(cap), tip) => {
                let tip = tip.unwrap_or(0);
                if tip > cap {
                    return Err(CallError::TipAboveCap { tip, cap });
                }
                (cap, Some(tip), 2)
            }
            (None, None, Some(tip)) => (tip, Some(tip), 2),
            (None, None, None) => (0, None, 0),
        };
        let mut env = EvmEnv::for_eth_block(
            &block.header,
            self.spec(),
            self.chain_id(),
            Some(BlobParams::cancun()),
        );
        if gas_price == 0 {
            env.block_env.basefee = 0;
        }
        let from = request.from.unwrap_or_default();
        let nonce = block
            .state
            .account(&from)
            .map_or(0, |account| account.nonce);
        let tx = TxEnv {
            tx_type,
            caller: from,
            gas_limit: gas,
            gas_price,
            gas_priority_fee: priority_fee,
            kind: request.to.map_or(TxKind::Create, TxKind::Call),
            value: request.value,
            data: request.data.clone(),
            nonce,
            chain_id: Some(self.chain_id()),
            ..Default::default()
        };
        // The block's own context: BLOCKHASH sees the blocks before it.
        let hashes = &block.recent_hashes[..block.recent_hashes.len().saturating_sub(1)];
        let reader = Reader {
            state: &block.state,
            hashes,
            parent_number: block.header.number.saturating_sub(1),
        };
        let mut db = State::builder().with_database_ref(reader).build();
        let mut evm = EthEvmFactory::default().create_evm(&mut db, env);
        let result = evm
            .transact_raw(tx)
            .map_err(|e| CallError::Invalid(e.to_string()))?;
        let gas_used = result.result.tx_gas_used();
        Ok(match result.result {
            ExecutionResult::Success { output, .. } => CallOutcome::Success {
                gas_used,
                output: output.into_data(),
            },
            ExecutionResult::Revert { output, .. } => CallOutcome::Revert { gas_used, output },
            ExecutionResult::Halt { reason, .. } => CallOutcome::Halt {
                gas_used,
                reason: format!("{reason:?}"),
            },
        })
    }
}
