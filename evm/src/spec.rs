//! The chain's rules, read from a geth-style `genesis.json`, and its genesis block.

use crate::state::{AccountInfo, MemoryState, StateChanges, StateStore};
use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_eips::eip1559::INITIAL_BASE_FEE;
use alloy_evm::eth::spec::EthExecutorSpec;
use alloy_genesis::Genesis;
use alloy_hardforks::{EthereumChainHardforks, EthereumHardfork, EthereumHardforks, ForkCondition};
use alloy_primitives::{Address, B64, B256, Bloom, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY};

/// Why a genesis file cannot start a chain here.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("config.{0} must be 0: only chains post-London from block 0 are supported")]
    ForkNotAtGenesis(&'static str),
    #[error(
        "config.terminalTotalDifficulty must be 0: the chain must be post-merge from genesis \
         (the executor runs Engine API payloads only)"
    )]
    NotPostMerge,
    #[error("config.{0} must be set: payloads are Engine API V3 (Cancun)")]
    MissingFork(&'static str),
    #[error("config.shanghaiTime ({shanghai}) is after config.cancunTime ({cancun})")]
    ForkOrder { shanghai: u64, cancun: u64 },
    #[error("config.{0} is set, but forks after Cancun are not supported yet")]
    UnsupportedFork(&'static str),
    #[error("genesis number must be 0, got {0}")]
    Number(u64),
    #[error("genesis baseFeePerGas {0} does not fit in 64 bits")]
    BaseFee(u128),
}

/// The forks the chain runs, for alloy-evm's executor and our header rules.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    pub chain_id: u64,
    pub shanghai_time: u64,
    pub cancun_time: u64,
    hardforks: EthereumChainHardforks,
}

impl EthereumHardforks for ChainSpec {
    fn ethereum_fork_activation(&self, fork: EthereumHardfork) -> ForkCondition {
        self.hardforks.ethereum_fork_activation(fork)
    }
}

impl EthExecutorSpec for ChainSpec {
    fn deposit_contract_address(&self) -> Option<Address> {
        // Deposit requests (EIP-6110) start at Prague, which this chain does not reach.
        None
    }
}

impl ChainSpec {
    fn from_genesis(genesis: &Genesis) -> Result<Self, GenesisError> {
        let c = &genesis.config;
        let at_zero = [
            ("homesteadBlock", c.homestead_block),
            ("eip150Block", c.eip150_block),
            ("eip155Block", c.eip155_block),
            ("eip158Block", c.eip158_block),
            ("byzantiumBlock", c.byzantium_block),
            ("constantinopleBlock", c.constantinople_block),
            ("petersburgBlock", c.petersburg_block),
            ("istanbulBlock", c.istanbul_block),
            ("berlinBlock", c.berlin_block),
            ("londonBlock", c.london_block),
        ];
        for (name, block) in at_zero {
            if block != Some(0) {
                return Err(GenesisError::ForkNotAtGenesis(name));
            }
        }
        if c.terminal_total_difficulty != Some(U256::ZERO) {
            return Err(GenesisError::NotPostMerge);
        }
        let shanghai = c
            .shanghai_time
            .ok_or(GenesisError::MissingFork("shanghaiTime"))?;
        let cancun = c
            .cancun_time
            .ok_or(GenesisError::MissingFork("cancunTime"))?;
        if shanghai > cancun {
            return Err(GenesisError::ForkOrder { shanghai, cancun });
        }
        for (name, time) in [
            ("pragueTime", c.prague_time),
            ("osakaTime", c.osaka_time),
            ("amsterdamTime", c.amsterdam_time),
            ("bpo1Time", c.bpo1_time),
        ] {
            if time.is_some() {
                return Err(GenesisError::UnsupportedFork(name));
            }
        }
        let mut forks: Vec<(EthereumHardfork, ForkCondition)> = [
            EthereumHardfork::Frontier,
            EthereumHardfork::Homestead,
            EthereumHardfork::Tangerine,
            EthereumHardfork::SpuriousDragon,
            EthereumHardfork::Byzantium,
            EthereumHardfork::Constantinople,
            EthereumHardfork::Petersburg,
            EthereumHardfork::Istanbul,
            EthereumHardfork::MuirGlacier,
            EthereumHardfork::Berlin,
            EthereumHardfork::London,
            EthereumHardfork::ArrowGlacier,
            EthereumHardfork::GrayGlacier,
        ]
        .into_iter()
        .map(|fork| (fork, ForkCondition::Block(0)))
        .collect();
        forks.push((
            EthereumHardfork::Paris,
            ForkCondition::TTD {
                activation_block_number: 0,
                fork_block: None,
                total_difficulty: U256::ZERO,
            },
        ));
        forks.push((
            EthereumHardfork::Shanghai,
            ForkCondition::Timestamp(shanghai),
        ));
        forks.push((EthereumHardfork::Cancun, ForkCondition::Timestamp(cancun)));
        Ok(Self {
            chain_id: c.chain_id,
            shanghai_time: shanghai,
            cancun_time: cancun,
            hardforks: EthereumChainHardforks::new(forks),
        })
    }
}

/// Reads the chain's rules, its genesis state and header.
pub(crate) fn genesis(json: &str) -> Result<(ChainSpec, Header, MemoryState), GenesisError> {
    let genesis: Genesis = serde_json::from_str(json)?;
    let spec = ChainSpec::from_genesis(&genesis)?;
    if let Some(number) = genesis.number.filter(|n| *n != 0) {
        return Err(GenesisError::Number(number));
    }

    let mut changes = StateChanges::default();
    for (address, account) in &genesis.alloc {
        let code_hash = match &account.code {
            Some(code) if !code.is_empty() => {
                let hash = keccak256(code);
                changes.codes.push((hash, code.clone()));
                hash
            }
            _ => KECCAK_EMPTY,
        };
        let storage = account
            .storage
            .iter()
            .flatten()
            .map(|(slot, value)| ((*slot).into(), (*value).into()))
            .collect();
        changes.push_account(
            *address,
            AccountInfo {
                nonce: account.nonce.unwrap_or_default(),
                balance: account.balance,
                code_hash,
            },
            storage,
        );
    }
    let mut state = MemoryState::default();
    state.apply(&changes);

    let base_fee = genesis.base_fee_per_gas.unwrap_or(INITIAL_BASE_FEE.into());
    let base_fee = u64::try_from(base_fee).map_err(|_| GenesisError::BaseFee(base_fee))?;
    let cancun = genesis.timestamp >= spec.cancun_time;
    let header = Header {
        parent_hash: genesis.parent_hash.unwrap_or_default(),
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: genesis.coinbase,
        state_root: state.state_root(),
        transactions_root: EMPTY_ROOT_HASH,
        receipts_root: EMPTY_ROOT_HASH,
        logs_bloom: Bloom::ZERO,
        difficulty: genesis.difficulty,
        number: 0,
        gas_limit: genesis.gas_limit,
        gas_used: 0,
        timestamp: genesis.timestamp,
        extra_data: genesis.extra_data.clone(),
        mix_hash: genesis.mix_hash,
        nonce: B64::from(genesis.nonce),
        base_fee_per_gas: Some(base_fee),
        withdrawals_root: (genesis.timestamp >= spec.shanghai_time).then_some(EMPTY_ROOT_HASH),
        blob_gas_used: cancun.then(|| genesis.blob_gas_used.unwrap_or_default()),
        excess_blob_gas: cancun.then(|| genesis.excess_blob_gas.unwrap_or_default()),
        parent_beacon_block_root: cancun.then_some(B256::ZERO),
        requests_hash: None,
        block_access_list_hash: None,
        slot_number: None,
    };
    Ok((spec, header, state))
}
