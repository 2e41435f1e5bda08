//! `cohort dkg` and `cohort reshare`: key ceremonies among the cluster's operators, over the
//! same authenticated p2p as `cohort run` (under the ceremony's own namespace), each operator
//! running one process and writing only its own files.
//!
//! Both write what `cohort cluster init` writes for an operator (the cluster lock and one
//! EIP-2335 keystore per validator share, where the operator's config says), so `cohort run`
//! starts on the result unchanged; `dkg` also writes the validators' `deposit-data.json`.
//! Nothing is written unless the ceremony succeeded everywhere this operator can see: every
//! file goes to a temporary name and is renamed into place, the lock last, and an existing lock
//! is only replaced with `--force`.

use crate::{config, keys, net, telemetry};
use alloy_primitives::Address;
use clap::Args;
use cohort_dkg::{
    CeremonyError, KeySetup, Outcome, Setup,
    deposit::{DEFAULT_AMOUNT_GWEI, DepositEntry, DepositTerms, Network},
};
use cohort_ingress::keys as vkeys;
use cohort_keystore::{
    eip2335::{self, Kdf},
    files, identity,
};
use cohort_marshal::PublicKey;
use cohort_operator::cluster::LockHash;
use commonware_codec::{EncodeSize as _, Write as _};
use commonware_cryptography::{
    Hasher as _, Sha256, Signer as _,
    bls12381::primitives::{group::Share, sharing::Sharing, variant::MinPk},
};
use commonware_runtime::{Runner as _, tokio};
use commonware_utils::{Faults as _, N3f1, ordered::Set};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};
use zeroize::Zeroizing;

/// How often a ceremony sends again what a peer has not answered.
const RESEND: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct DkgArgs {
    /// This operator's config: its identity, listen address, the cluster's operators and their
    /// addresses, and where the lock, share keystores and password file go (the lock must not
    /// exist yet; the shares directory and password file are created if missing).
    #[arg(long)]
    pub config: PathBuf,
    /// New validator keys to create.
    #[arg(long)]
    pub validators: u64,
    /// The chain index of the first new validator (the next ones follow): the lock names
    /// validators by index. On a real chain, the index the chain will give the first deposit.
    #[arg(long)]
    pub first_index: u64,
    /// Where the validators' withdrawals go: credentials 0x01 + 11 zero bytes + this address.
    #[arg(long, value_parser = parse_address)]
    pub withdrawal_address: Address,
    /// The network the deposits are for: mainnet, sepolia, holesky, hoodi, or any name with
    /// --genesis-fork-version.
    #[arg(long)]
    pub network: String,
    /// The network's genesis fork version (0x + 8 hex digits), for a network not listed.
    #[arg(long, value_parser = parse_fork_version)]
    pub genesis_fork_version: Option<[u8; 4]>,
    /// Deposit per validator, in gwei.
    #[arg(long, default_value_t = DEFAULT_AMOUNT_GWEI)]
    pub amount_gwei: u64,
    /// Where to write the deposit data (default: deposit-data.json beside the lock).
    #[arg(long)]
    pub deposit_data: Option<PathBuf>,
    #[command(flatten)]
    pub common: CeremonyArgs,
}

#[derive(Args)]
pub struct ReshareArgs {
    /// This operator's config for the new cluster: its operators (the new set) with their
    /// addresses, this operator's identity and listen address, and where the new lock and
    /// shares go. An outgoing operator gives a config naming the new set too; it writes nothing.
    #[arg(long)]
    pub config: PathBuf,
    /// This operator's config in the current cluster, if it is one of the current operators:
    /// its shares are what it deals.
    #[arg(long)]
    pub old_config: Option<PathBuf>,
    /// The current cluster lock, for an operator joining the cluster (it has no old config).
    #[arg(long)]
    pub old_lock: Option<PathBuf>,
    /// Addresses of operators that neither config lists (`<public key hex>@<host:port>`).
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// A current operator that will not take part (lost its keys, is gone): the others deal
    /// without it, as long as the current threshold remains. Its public key in hex.
    #[arg(long = "absent")]
    pub absent: Vec<String>,
    /// Reshare a cluster whose lock carries a cluster AVS (BN254) key although the key cannot
    /// move yet: the new lock has none, so the new cluster is no longer that AVS operator (it
    /// must register a new key with the AVS). Without this flag such a reshare is refused.
    #[arg(long)]
    pub drop_avs_key: bool,
    #[command(flatten)]
    pub common: CeremonyArgs,
}

#[derive(Args)]
pub struct CeremonyArgs {
    /// Give up (naming the operators not heard from) after this long.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
    /// Key derivation of the share keystores: `standard` (scrypt, as the deposit tools), or
    /// `light` for local test clusters only.
    #[arg(long, default_value = "standard", value_parser = crate::operator_cli::parse_kdf)]
    pub kdf: Kdf,
    /// Replace an existing cluster lock and shares at the config's paths.
    #[arg(long)]
    pub force: bool,
    /// Log filter directives (default RUST_LOG, then `info`).
    #[arg(long)]
    pub log: Option<String>,
    /// Test only: deal this operator (public key hex) a share that does not match the
    /// commitment, so that the others' handling of a byzantine dealer can be tested end to end.
    #[arg(long, hide = true)]
    pub byzantine_bad_dealing_to: Option<String>,
}

fn parse_address(text: &str) -> Result<Address, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a 20-byte hex address"))
}

fn parse_fork_version(text: &str) -> Result<[u8; 4], String> {
    let bytes = vkeys::decode_hex(text).ok_or_else(|| format!("`{text}` is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| format!("`{text}` is not 4 bytes"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    let hash = Sha256::hash(&[bytes.as_slice()]);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_ref());
    out
}

/// The ceremony's config, lock not required, and this operator's identity.
fn load_config(
    path: &Path,
) -> Result<(config::Config, commonware_cryptography::ed25519::PrivateKey), String> {
    let config = config::load_with(path, std::env::vars(), false).map_err(|e| e.to_string())?;
    let key = identity::load(&config.identity_key).map_err(|e| format!("identity_key: {e}"))?;
    Ok((config, key))
}

/// Refuses to replace a lock, and prepares the shares directory and password file.
fn prepare_outputs(config: &config::Config, force: bool) -> Result<(), String> {
    if config.lock.exists() && !force {
        return Err(format!(
            "{} exists; refusing to replace a cluster lock (pass --force to replace it and its \
             shares)",
            config.lock.display()
        ));
    }
    if !config.shares_dir.is_dir() {
        std::fs::create_dir_all(&config.shares_dir)
            .map_err(|e| format!("{}: {e}", config.shares_dir.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&config.shares_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", config.shares_dir.display()))?;
    }
    if !config.password_file.exists() {
        let mut bytes = Zeroizing::new([0u8; 24]);
        rand::Rng::fill_bytes(&mut cohort_keystore::os_rng(), &mut *bytes);
        let mut line = Zeroizing::new(hex(&*bytes));
        line.push('\n');
        files::write_secret(&config.password_file, line.as_bytes())
            .map_err(|e| format!("{}: {e}", config.password_file.display()))?;
    }
    files::read_password(&config.password_file)
        .map(|_| ())
        .map_err(|e| format!("shares.password_file: {e}"))
}

/// How errors name an operator: its position in the list it came from and its address.
fn names(
    book: &BTreeMap<PublicKey, SocketAddr>,
    order: &[PublicKey],
) -> BTreeMap<PublicKey, String> {
    book.iter()
        .map(|(key, address)| {
            let label = match order.iter().position(|k| k == key) {
                Some(i) => format!("{i} ({address}, {})", &key.to_string()[..16]),
                None => format!("({address}, {})", &key.to_string()[..16]),
            };
            (key.clone(), label)
        })
        .collect()
}

/// Runs the ceremony on the tokio runtime over the authenticated network.
fn run_ceremony(
    listen: SocketAddr,
    namespace: Vec<u8>,
    book: &BTreeMap<PublicKey, SocketAddr>,
    setup: Setup,
) -> Result<Outcome, String> {
    let peers: Vec<(PublicKey, SocketAddr)> = book.iter().map(|(k, a)| (k.clone(), *a)).collect();
    let max = cohort_dkg::wire::max_message_size(
        setup.keys.len(),
        std::num::NonZeroU32::new(setup.players.len() as u32).ok_or("no players")?,
    );
    let key = setup.me.clone();
    tokio::Runner::new(tokio::Config::new()).start(|context| async move {
        let (sender, receiver) =
            net::start_ceremony(&context, listen, key, &namespace, peers, max)?;
        cohort_dkg::run(context, sender, receiver, setup)
            .await
            .map_err(|err: CeremonyError| err.to_string())
    })
}

/// Writes this operator's new shares and the lock (last), then loads them as `cohort run`
/// would.
fn write_outputs(
    config: &config::Config,
    operators: &Set<PublicKey>,
    outcome: &Outcome,
    kdf: Kdf,
    deposit: Option<(PathBuf, Vec<DepositEntry>)>,
) -> Result<(), String> {
    let password = files::read_password(&config.password_file)
        .map_err(|e| format!("shares.password_file: {e}"))?;
    let mut rng = cohort_keystore::os_rng();
    let mut validators = Vec::with_capacity(outcome.keys.len());
    for key in &outcome.keys {
        let share: &Share = key
            .share
            .as_ref()
            .ok_or("this operator holds no share of the new cluster")?;
        let mut secret = Zeroizing::new(Vec::with_capacity(share.private.encode_size()));
        share.private.write(&mut *secret);
        let keystore = eip2335::encrypt(
            &secret,
            &password,
            &vkeys::to_hex(&share.public::<MinPk>()),
            "",
            kdf,
            &mut rng,
        )
        .map_err(|e| format!("encrypting validator {}'s share: {e}", key.id))?;
        let path = keys::share_file(&config.shares_dir, key.id);
        files::write_secret(&path, keystore.to_json_pretty().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        validators.push(keys::LockedValidator {
            index: key.id,
            public_key: vkeys::to_hex(key.sharing.public()),
            sharing: vkeys::to_hex(&key.sharing),
        });
    }
    if let Some((path, entries)) = deposit {
        let text = serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())?;
        files::write_secret(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let lock = keys::Lock {
        name: config.file.cluster.name.clone(),
        threshold: N3f1::quorum(operators.len() as u32),
        operators: operators.iter().map(identity::public_key_hex).collect(),
        validators,
        // A cluster AVS key is split by `cohort cluster init`; a DKG does not make one.
        avs: None,
    };
    let text = serde_json::to_string_pretty(&lock).map_err(|e| e.to_string())?;
    files::write_secret(&config.lock, text.as_bytes())
        .map_err(|e| format!("{}: {e}", config.lock.display()))?;
    // What `cohort run` will do first: load and check every key against the lock.
    keys::load(config).map_err(|e| format!("the written keys do not load: {e}"))?;
    Ok(())
}

fn fail(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::FAILURE
}

fn misbehave(args: &CeremonyArgs) -> Result<Option<cohort_dkg::Misbehavior>, String> {
    args.byzantine_bad_dealing_to
        .as_deref()
        .map(|hex| {
            identity::parse_public_key(hex)
                .map(cohort_dkg::Misbehavior::CorruptDealingTo)
                .map_err(|e| format!("--byzantine-bad-dealing-to: {e}"))
        })
        .transpose()
}

pub fn dkg(args: DkgArgs) -> ExitCode {
    match dkg_inner(args) {
        Ok(code) => code,
        Err(err) => fail(err),
    }
}

fn dkg_inner(args: DkgArgs) -> Result<ExitCode, String> {
    let (config, key) = load_config(&args.config)?;
    let order: Vec<PublicKey> = config.operators.iter().map(|(k, _)| k.clone()).collect();
    let operators = cohort_dkg::operator_set(order.clone())?;
    let me = key.public_key();
    let index = operators
        .position(&me)
        .ok_or("identity_key is not one of cluster.operators")?;
    telemetry::init_logs(
        telemetry::LogFormat::Pretty,
        args.common.log.as_deref(),
        index,
    )?;
    if !config::is_cluster_size(operators.len()) {
        return Err(format!(
            "cluster.operators: {} operators; a cluster has 3f+1 (4, 7, 10, 13)",
            operators.len()
        ));
    }
    if args.validators == 0 {
        return Err("--validators must be at least 1".into());
    }
    let network = match (Network::named(&args.network), args.genesis_fork_version) {
        (_, Some(version)) => Network {
            name: args.network.clone(),
            genesis_fork_version: version,
        },
        (Some(network), None) => network,
        (None, None) => {
            return Err(format!(
                "--network {}: not a known network (mainnet, sepolia, holesky, hoodi); give \
                 --genesis-fork-version for another",
                args.network
            ));
        }
    };
    let terms = DepositTerms {
        network,
        withdrawal_address: args.withdrawal_address,
        amount_gwei: args.amount_gwei,
    };
    prepare_outputs(&config, args.common.force)?;
    let deposit_path = args.deposit_data.clone().unwrap_or_else(|| {
        config
            .lock
            .parent()
            .unwrap_or(Path::new("."))
            .join("deposit-data.json")
    });
    if deposit_path.exists() && !args.common.force {
        return Err(format!(
            "{} exists; refusing to replace deposit data (pass --force)",
            deposit_path.display()
        ));
    }
    let ids: Vec<u64> = (args.first_index..args.first_index + args.validators).collect();
    let name = config.file.cluster.name.clone();
    // Operators with other parameters fail the handshake instead of making other keys.
    let operators_hex: Vec<String> = operators.iter().map(identity::public_key_hex).collect();
    let params = digest(&[
        operators_hex.join(",").as_bytes(),
        &args.first_index.to_be_bytes(),
        &args.validators.to_be_bytes(),
        terms.withdrawal_credentials().as_slice(),
        &terms.amount_gwei.to_be_bytes(),
        &terms.network.genesis_fork_version,
        terms.network.name.as_bytes(),
    ]);
    let namespace = format!("cohort/dkg-ceremony/{name}/{}", hex(&params)).into_bytes();
    let book: BTreeMap<PublicKey, SocketAddr> = config.operators.iter().cloned().collect();
    let signing_terms = terms.clone();
    let setup = Setup {
        namespace: format!("cohort/dkg/{name}").into_bytes(),
        me: key,
        dealers: operators.clone(),
        players: operators.clone(),
        keys: ids
            .iter()
            .map(|id| KeySetup {
                id: *id,
                previous: None,
            })
            .collect(),
        signing_root: Box::new(move |sharing: &Sharing<MinPk>| {
            signing_terms.signing_root(sharing.public())
        }),
        names: names(&book, &order),
        timeout: Duration::from_secs(args.common.timeout_seconds),
        resend: RESEND,
        misbehave: misbehave(&args.common)?,
    };
    let outcome = run_ceremony(config.listen, namespace, &book, setup)?;
    let mut entries = Vec::with_capacity(outcome.keys.len());
    for key in &outcome.keys {
        // The ceremony checked it already; a file sent to the deposit contract gets one more.
        if !vkeys::verify(key.sharing.public(), &key.signing_root, &key.signature) {
            return Err(format!(
                "validator {}'s deposit signature does not verify",
                key.id
            ));
        }
        entries.push(terms.entry(key.sharing.public(), &key.signature));
    }
    write_outputs(
        &config,
        &operators,
        &outcome,
        args.common.kdf,
        Some((deposit_path.clone(), entries)),
    )?;
    for key in &outcome.keys {
        println!("{} {}", key.id, vkeys::to_hex(key.sharing.public()));
    }
    eprintln!(
        "created {} validator keys with {} operators (threshold {}); wrote {}, {} and the shares \
         under {}; outcome {}",
        outcome.keys.len(),
        operators.len(),
        N3f1::quorum(operators.len() as u32),
        config.lock.display(),
        deposit_path.display(),
        config.shares_dir.display(),
        hex(&outcome.digest)
    );
    Ok(ExitCode::SUCCESS)
}

/// What a current operator brings to a reshare, or what a joining one knows of the cluster.
struct Current {
    name: String,
    operators: Set<PublicKey>,
    sharings: Vec<(u64, Sharing<MinPk>)>,
    hash: LockHash,
    shares: BTreeMap<u64, Share>,
    addresses: Vec<(PublicKey, SocketAddr)>,
    /// The lock carries a cluster AVS key, which resharing does not carry over.
    avs_key: bool,
}

fn current(args: &ReshareArgs, me: &PublicKey) -> Result<Current, String> {
    if let Some(path) = &args.old_config {
        let old = config::load(path, std::env::vars()).map_err(|e| e.to_string())?;
        let loaded = keys::load(&old).map_err(|e| format!("--old-config: {e}"))?;
        if loaded.key.public_key() != *me {
            return Err("--old-config names another identity than --config".into());
        }
        return Ok(Current {
            name: loaded.cluster.name.clone(),
            operators: loaded.participants.clone(),
            sharings: loaded
                .shares
                .iter()
                .map(|(v, s)| (*v, s.sharing.clone()))
                .collect(),
            hash: loaded.cluster.lock_hash,
            shares: loaded
                .shares
                .iter()
                .map(|(v, s)| (*v, s.share.clone()))
                .collect(),
            addresses: old.operators.clone(),
            avs_key: loaded.avs.is_some(),
        });
    }
    let path = args
        .old_lock
        .as_ref()
        .ok_or("give --old-config (a current operator) or --old-lock (a joining one)")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lock: keys::Lock =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let keys: Vec<PublicKey> = lock
        .operators
        .iter()
        .map(|hex| identity::parse_public_key(hex).map_err(|e| format!("{}: {e}", path.display())))
        .collect::<Result<_, _>>()?;
    let operators = cohort_dkg::operator_set(keys)?;
    let mut sharings = Vec::new();
    for validator in &lock.validators {
        let sharing = keys::decode_sharing(&validator.sharing, operators.len() as u32)
            .map_err(|e| format!("{}: validator {}: {e}", path.display(), validator.index))?;
        sharings.push((validator.index, sharing));
    }
    let hash = LockHash::of(
        &lock.name,
        lock.threshold,
        &operators,
        sharings.iter().map(|(v, s)| (*v, s)),
    );
    // Hashed as `keys::load` hashes it, so a joining operator agrees with the current ones.
    let hash = match &lock.avs {
        None => hash,
        Some(avs) => {
            let sharing = avs
                .sharing(lock.threshold, operators.len())
                .map_err(|e| format!("{}: avs: {e}", path.display()))?;
            keys::LockedAvsKey::bind(&sharing, hash)
        }
    };
    Ok(Current {
        name: lock.name,
        operators,
        sharings,
        hash,
        shares: BTreeMap::new(),
        addresses: Vec::new(),
        avs_key: lock.avs.is_some(),
    })
}

pub fn reshare(args: ReshareArgs) -> ExitCode {
    match reshare_inner(args) {
        Ok(code) => code,
        Err(err) => fail(err),
    }
}

fn reshare_inner(args: ReshareArgs) -> Result<ExitCode, String> {
    let (config, key) = load_config(&args.config)?;
    let me = key.public_key();
    let current = current(&args, &me)?;
    // The AVS key's shares are BN254, which the ceremony does not reshare: going on silently
    // would leave the new cluster without the AVS identity its AVSs know it by.
    if current.avs_key && !args.drop_avs_key {
        return Err(
            "the current lock carries a cluster AVS (BN254) key, which `cohort reshare` \
                    cannot move yet: the new lock would have no AVS key. Keep the current \
                    operators, or pass --drop-avs-key on every operator to reshare the \
                    validator keys only (the cluster must then register a new AVS key)"
                .into(),
        );
    }
    let new_order: Vec<PublicKey> = config.operators.iter().map(|(k, _)| k.clone()).collect();
    let players = cohort_dkg::operator_set(new_order.clone())?;
    let log_index = players
        .position(&me)
        .or_else(|| current.operators.position(&me))
        .ok_or("identity_key is neither a current nor a new operator")?;
    telemetry::init_logs(
        telemetry::LogFormat::Pretty,
        args.common.log.as_deref(),
        log_index,
    )?;
    if current.avs_key {
        tracing::warn!(
            "--drop-avs-key: the new lock will carry no cluster AVS key; the current \
             operators' avs-share.json files stay where they are and sign nothing for the new \
             cluster"
        );
    }
    if !config::is_cluster_size(players.len()) {
        return Err(format!(
            "cluster.operators: {} operators; a cluster has 3f+1 (4, 7, 10, 13)",
            players.len()
        ));
    }
    let mut absent = Vec::new();
    for hex in &args.absent {
        absent.push(identity::parse_public_key(hex).map_err(|e| format!("--absent: {e}"))?);
    }
    let dealers = cohort_dkg::operator_set(
        current
            .operators
            .iter()
            .filter(|k| !absent.contains(k))
            .cloned(),
    )?;
    let needed = N3f1::quorum(current.operators.len() as u32) as usize;
    if dealers.len() < needed {
        return Err(format!(
            "{} current operators would deal; the current threshold is {needed}",
            dealers.len()
        ));
    }
    let joining = players.position(&me).is_some();
    if joining {
        prepare_outputs(&config, args.common.force)?;
    }
    let mut book: BTreeMap<PublicKey, SocketAddr> = BTreeMap::new();
    for (key, address) in current.addresses.iter().chain(config.operators.iter()) {
        book.insert(key.clone(), *address);
    }
    for peer in &args.peers {
        let (key, address) = peer
            .split_once('@')
            .ok_or_else(|| format!("--peer {peer}: not <public key>@<host:port>"))?;
        let key = identity::parse_public_key(key).map_err(|e| format!("--peer {peer}: {e}"))?;
        let address: SocketAddr = address
            .parse()
            .map_err(|_| format!("--peer {peer}: `{address}` is not host:port"))?;
        book.insert(key, address);
    }
    let unknown: Vec<String> = dealers
        .iter()
        .chain(players.iter())
        .filter(|k| !book.contains_key(*k))
        .map(identity::public_key_hex)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "no address for {} (add --peer <key>@<host:port>)",
            unknown.join(", ")
        ));
    }
    book.retain(|k, _| dealers.position(k).is_some() || players.position(k).is_some());
    let listen = if joining {
        config.listen
    } else {
        *book
            .get(&me)
            .ok_or("this operator's own address is unknown")?
    };
    let new_name = config.file.cluster.name.clone();
    let players_hex: Vec<String> = players.iter().map(identity::public_key_hex).collect();
    let dealers_hex: Vec<String> = dealers.iter().map(identity::public_key_hex).collect();
    let params = digest(&[
        &current.hash.0,
        new_name.as_bytes(),
        players_hex.join(",").as_bytes(),
        dealers_hex.join(",").as_bytes(),
    ]);
    let namespace = format!("cohort/reshare-ceremony/{new_name}/{}", hex(&params)).into_bytes();
    let mut keys_setup = Vec::with_capacity(current.sharings.len());
    for (id, sharing) in &current.sharings {
        let output = cohort_dkg::previous_output(current.hash.0, sharing, &current.operators)
            .map_err(|e| format!("validator {id}: {e}"))?;
        keys_setup.push(KeySetup {
            id: *id,
            previous: Some((output, current.shares.get(id).cloned())),
        });
    }
    let check_name = new_name.clone();
    let setup = Setup {
        namespace: format!("cohort/dkg/{}", current.name).into_bytes(),
        me: key,
        dealers,
        players: players.clone(),
        keys: keys_setup,
        // Every new operator proves its new share works by signing this.
        signing_root: Box::new(move |sharing: &Sharing<MinPk>| {
            digest(&[
                b"cohort/reshare/check",
                check_name.as_bytes(),
                &commonware_codec::Encode::encode(sharing),
            ])
        }),
        names: names(&book, &new_order),
        timeout: Duration::from_secs(args.common.timeout_seconds),
        resend: RESEND,
        misbehave: misbehave(&args.common)?,
    };
    let outcome = run_ceremony(listen, namespace, &book, setup)?;
    for (key, (_, old)) in outcome.keys.iter().zip(&current.sharings) {
        if key.sharing.public() != old.public() {
            return Err(format!("validator {}'s public key changed", key.id));
        }
    }
    if joining {
        write_outputs(&config, &players, &outcome, args.common.kdf, None)?;
        eprintln!(
            "reshared {} validators to {} operators (threshold {}), every public key unchanged; \
             wrote {} and the shares under {}. Bring slashing history: `cohort \
             slashing-protection export` on a current operator, `import` here, before `cohort run`",
            outcome.keys.len(),
            players.len(),
            N3f1::quorum(players.len() as u32),
            config.lock.display(),
            config.shares_dir.display()
        );
    } else {
        eprintln!(
            "reshared {} validators to {} operators; this operator is not one of them, and its \
             shares do not sign for the new lock",
            outcome.keys.len(),
            players.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AvsKey, init_cluster, tests::plan};

    fn reshare_args(config: &Path, drop_avs_key: bool) -> ReshareArgs {
        ReshareArgs {
            config: config.to_path_buf(),
            old_config: Some(config.to_path_buf()),
            old_lock: None,
            peers: Vec::new(),
            absent: Vec::new(),
            drop_avs_key,
            common: CeremonyArgs {
                timeout_seconds: 1,
                kdf: Kdf::light(),
                force: false,
                log: None,
                byzantine_bad_dealing_to: None,
            },
        }
    }

    /// A reshare would write a lock without the cluster's AVS key (its BN254 shares are not
    /// reshared), so it is refused before any ceremony starts unless the operator says so.
    #[test]
    fn a_reshare_that_would_drop_the_avs_key_is_refused_without_the_flag() {
        let out = std::env::temp_dir().join(format!("cohort-reshare-avs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut plan = plan(out.clone());
        plan.avs = Some(AvsKey::Fresh);
        let configs = init_cluster(&plan).expect("cluster init");
        let lock_before = std::fs::read(out.join("cluster-lock.json")).expect("lock");

        let refused = reshare_inner(reshare_args(&configs[0], false)).expect_err("refused");
        assert!(refused.contains("--drop-avs-key"), "{refused}");
        assert!(refused.contains("AVS"), "{refused}");
        assert_eq!(
            std::fs::read(out.join("cluster-lock.json")).expect("lock"),
            lock_before,
            "nothing written"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}
