//! Operator keys at rest: `cohort keys generate`, `cohort cluster init`, and loading them at
//! start.
//!
//! A cluster's public facts (operators, validators' public keys and sharings) live in one
//! cluster lock every operator holds; each operator's secrets live in its own directory: its
//! ed25519 identity and one EIP-2335 keystore per validator share, every file mode 0600. A
//! key file any other user can read is refused, not just warned about: a share that leaked
//! once has leaked for good.
//!
//! A cluster that runs one AVS operator together also holds a cluster BN254 key split t-of-n
//! the same way: its public half (group G2 and G1 keys, every share's G2 key) in the lock's
//! optional `avs` section, each operator's share in `avs-share.json`, an EIP-2335 keystore of
//! the share's 32-byte big-endian scalar beside its validator shares.

use crate::config::{self, Config};
use cohort_avs_crypto::{
    Bn254G1PublicKey, Bn254Key, Bn254PublicKey, Bn254SecretShare, Bn254Sharing,
};
use cohort_ingress::keys::{self, ValidatorShare};
use cohort_keystore::{
    eip2335::{self, Kdf, Keystore, KeystoreError},
    files::{self, SecretFileError},
    identity::{self, IdentityError},
};
use cohort_marshal::PublicKey;
use cohort_operator::cluster::{ClusterIdentity, LockHash};
use commonware_codec::{Copying, Decode as _, DecodeExt as _, EncodeSize as _, Write as _};
use commonware_cryptography::{
    Signer as _,
    bls12381::primitives::{
        group::{Private, Share},
        sharing::{ModeVersion, Sharing},
        variant::MinPk,
    },
    ed25519::PrivateKey,
};
use commonware_utils::{Faults as _, N3f1, Participant, TryCollect as _, ordered::Set};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};
use zeroize::Zeroizing;

/// The cluster lock: what every operator of a cluster must agree on, and nothing secret.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub name: String,
    /// Partial signatures needed to sign for a validator (n - f).
    pub threshold: u32,
    /// Operators' ed25519 public keys (hex) in share order: the share at position i is
    /// operator i's.
    pub operators: Vec<String>,
    pub validators: Vec<LockedValidator>,
    /// The cluster's BN254 AVS operator key, when it has one. Locks written before AVS keys
    /// existed have none, and load as they always did (same lock hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avs: Option<LockedAvsKey>,
}

/// The public half of the cluster's BN254 AVS key, split t-of-n with the lock's threshold
/// (operator i's share is the polynomial's value at i + 1, as for validator shares).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedAvsKey {
    /// The group G2 key (hex, 128 bytes, `X.c1 ‖ X.c0 ‖ Y.c1 ‖ Y.c0` as EigenLayer encodes
    /// it): what Hourglass's aggregator verifies the cluster's result signatures against.
    pub public_key: String,
    /// The group G1 key (hex, 64 bytes `X ‖ Y`), registered beside the G2 key in EigenLayer's
    /// `KeyRegistrar`.
    pub public_key_g1: String,
    /// Every share's G2 key (hex, 128 bytes) in share order: operator i's partial signatures
    /// verify against `shares[i]`.
    pub shares: Vec<String>,
}

impl LockedAvsKey {
    pub fn of(sharing: &Bn254Sharing) -> Self {
        Self {
            public_key: alloy_primitives::hex::encode(sharing.group_public_key().to_bytes()),
            public_key_g1: alloy_primitives::hex::encode(sharing.group_g1_public_key().to_bytes()),
            shares: sharing
                .share_public_keys()
                .iter()
                .map(|key| alloy_primitives::hex::encode(key.to_bytes()))
                .collect(),
        }
    }

    /// Parses and checks the section: every key a valid point, as many shares as operators, and
    /// the share keys one polynomial's values whose constant term is the group key.
    pub fn sharing(&self, threshold: u32, operators: usize) -> Result<Bn254Sharing, String> {
        if self.shares.len() != operators {
            return Err(format!(
                "{} share keys for {operators} operators",
                self.shares.len()
            ));
        }
        let bytes = |what: &str, text: &str| {
            keys::decode_hex(text).ok_or_else(|| format!("{what} is not hex"))
        };
        let group = Bn254PublicKey::from_bytes(&bytes("public_key", &self.public_key)?)
            .map_err(|err| format!("public_key: {err}"))?;
        let group_g1 = Bn254G1PublicKey::from_bytes(&bytes("public_key_g1", &self.public_key_g1)?)
            .map_err(|err| format!("public_key_g1: {err}"))?;
        let mut shares = Vec::with_capacity(self.shares.len());
        for (i, text) in self.shares.iter().enumerate() {
            let what = format!("shares[{i}]");
            shares.push(
                Bn254PublicKey::from_bytes(&bytes(&what, text)?)
                    .map_err(|err| format!("{what}: {err}"))?,
            );
        }
        Bn254Sharing::new(threshold, group, group_g1, shares).map_err(|err| err.to_string())
    }

    /// `hash`, chained with this key's public parts (see [`LockHash::with_avs_key`]).
    pub fn bind(sharing: &Bn254Sharing, hash: LockHash) -> LockHash {
        let shares: Vec<[u8; 128]> = sharing
            .share_public_keys()
            .iter()
            .map(Bn254PublicKey::to_bytes)
            .collect();
        hash.with_avs_key(
            &sharing.group_public_key().to_bytes(),
            &sharing.group_g1_public_key().to_bytes(),
            shares.iter().map(|share| share.as_slice()),
        )
    }
}

/// One operator's part of the cluster's AVS key: the sharing every operator holds and its own
/// share, ready for the pure signing functions of `cohort_avs_crypto::bn254::threshold`.
#[derive(Clone, Debug)]
pub struct AvsShare {
    pub sharing: Arc<Bn254Sharing>,
    pub share: Bn254SecretShare,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedValidator {
    pub index: u64,
    /// The validator's BLS public key (hex, 48 bytes).
    pub public_key: String,
    /// The public polynomial of its split (hex of commonware's `Sharing` encoding): every
    /// share's public key follows from it.
    pub sharing: String,
}

/// Everything secret and public the node needs from disk, checked against each other.
pub struct Loaded {
    pub key: PrivateKey,
    /// The cluster's name and its lock's hash, which every namespace is derived from.
    pub cluster: ClusterIdentity,
    /// This operator's position in `participants`.
    pub index: usize,
    pub participants: Set<PublicKey>,
    pub shares: Arc<BTreeMap<u64, ValidatorShare>>,
    /// This operator's share of the cluster AVS key, when the lock has one.
    pub avs: Option<AvsShare>,
}

/// The keystore file of this operator's share of the cluster AVS key.
pub fn avs_share_file(dir: &Path) -> PathBuf {
    dir.join("avs-share.json")
}

/// The keystore file of `validator`'s share.
pub fn share_file(dir: &Path, validator: u64) -> PathBuf {
    dir.join(format!("share-{validator}.json"))
}

pub(crate) fn decode_sharing(text: &str, operators: u32) -> Result<Sharing<MinPk>, String> {
    let bytes = keys::decode_hex(text).ok_or("is not hex")?;
    let max = NonZeroU32::new(operators).ok_or("the cluster has no operators")?;
    Sharing::<MinPk>::decode_cfg(bytes, &(max, ModeVersion::v0())).map_err(|err| err.to_string())
}

/// Why the keys a config names cannot run this operator. Each variant names the config field
/// or the file at fault, since an operator fixes one file at a time.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("identity_key: {0}")]
    Identity(#[from] IdentityError),
    #[error("cluster.operators: an operator appears twice")]
    DuplicateOperator,
    #[error(
        "identity_key {} is operator {operator}, which is not in cluster.operators",
        path.display()
    )]
    NotAnOperator { path: PathBuf, operator: String },
    #[error("shares.lock {}: {source}", path.display())]
    LockUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shares.lock {}: not a cluster lock: {source}", path.display())]
    LockMalformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "shares.lock {} lists other operators than cluster.operators (the lock: {}; the \
         config, in share order: {})",
        path.display(),
        locked.join(", "),
        configured.join(", ")
    )]
    LockOperators {
        path: PathBuf,
        locked: Vec<String>,
        configured: Vec<String>,
    },
    #[error(
        "shares.lock {} is the lock of cluster `{locked}`, but cluster.name is `{configured}`",
        path.display()
    )]
    LockName {
        path: PathBuf,
        locked: String,
        configured: String,
    },
    #[error("shares.lock {}: threshold {found} is not n - f = {expected}", path.display())]
    LockThreshold {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("shares.lock {}: no validators", path.display())]
    NoValidators { path: PathBuf },
    #[error("shares.password_file: {0}")]
    Password(SecretFileError),
    #[error("validator {validator} in {}: {problem}", lock.display())]
    Validator {
        validator: u64,
        lock: PathBuf,
        problem: ValidatorProblem,
    },
    /// The share's keystore file is missing, unreadable or readable by other users.
    #[error(transparent)]
    ShareFile(SecretFileError),
    #[error("{}: {problem}", path.display())]
    Share {
        path: PathBuf,
        problem: ShareProblem,
    },
    #[error("shares.lock {}: avs: {problem}", path.display())]
    AvsKey { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    AvsShare {
        path: PathBuf,
        problem: AvsShareProblem,
    },
}

/// What is wrong with this operator's AVS key share once read.
#[derive(Debug, thiserror::Error)]
pub enum AvsShareProblem {
    #[error("not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("not a BN254 secret: {0}")]
    NotBn254(cohort_avs_crypto::Error),
    #[error(
        "this is not operator {operator}'s share of the cluster AVS key in the lock (wrong \
         keystore, or a lock from another cluster)"
    )]
    Foreign { operator: usize },
}

/// What is wrong with one validator's entry in the cluster lock.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorProblem {
    #[error("sharing {0}")]
    Sharing(String),
    #[error("public_key is not the sharing's public key")]
    PublicKey,
    #[error("sharing's threshold is not the lock's")]
    Threshold,
    #[error("no share for this operator: {0}")]
    NoShare(String),
    #[error("appears twice")]
    Duplicate,
}

/// What is wrong with a share's keystore once read.
#[derive(Debug, thiserror::Error)]
pub enum ShareProblem {
    #[error("not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("not a BLS secret: {0}")]
    NotBls(commonware_codec::Error),
    #[error(
        "this share is not operator {operator}'s share of validator {validator} (wrong \
         keystore, or a lock from another cluster)"
    )]
    Foreign { operator: usize, validator: u64 },
}

/// Reads every key the config names and checks they belong together; the error names the file
/// and what is wrong.
pub fn load(config: &Config) -> Result<Loaded, KeysError> {
    let key = identity::load(&config.identity_key)?;
    let me = key.public_key();
    let participants: Set<PublicKey> = config
        .operators
        .iter()
        .map(|(key, _)| key.clone())
        .try_collect()
        .map_err(|_| KeysError::DuplicateOperator)?;
    let index = participants
        .position(&me)
        .ok_or_else(|| KeysError::NotAnOperator {
            path: config.identity_key.clone(),
            operator: identity::public_key_hex(&me),
        })?;

    let lock_path = &config.lock;
    let text = std::fs::read_to_string(lock_path).map_err(|source| KeysError::LockUnreadable {
        path: lock_path.clone(),
        source,
    })?;
    let lock: Lock = serde_json::from_str(&text).map_err(|source| KeysError::LockMalformed {
        path: lock_path.clone(),
        source,
    })?;
    if lock.name != config.file.cluster.name {
        return Err(KeysError::LockName {
            path: lock_path.clone(),
            locked: lock.name,
            configured: config.file.cluster.name.clone(),
        });
    }
    let in_order: Vec<String> = participants.iter().map(identity::public_key_hex).collect();
    if lock.operators != in_order {
        return Err(KeysError::LockOperators {
            path: lock_path.clone(),
            locked: lock.operators,
            configured: in_order,
        });
    }
    let n = participants.len() as u32;
    let expected_threshold = N3f1::quorum(n);
    if lock.threshold != expected_threshold {
        return Err(KeysError::LockThreshold {
            path: lock_path.clone(),
            found: lock.threshold,
            expected: expected_threshold,
        });
    }
    if lock.validators.is_empty() {
        return Err(KeysError::NoValidators {
            path: lock_path.clone(),
        });
    }

    let password = files::read_password(&config.password_file).map_err(KeysError::Password)?;
    let participant = Participant::new(index as u32);
    let mut shares = BTreeMap::new();
    let mut sharings = Vec::with_capacity(lock.validators.len());
    for validator in &lock.validators {
        let at = |problem| KeysError::Validator {
            validator: validator.index,
            lock: lock_path.clone(),
            problem,
        };
        let sharing = decode_sharing(&validator.sharing, n)
            .map_err(|err| at(ValidatorProblem::Sharing(err)))?;
        if keys::to_hex(sharing.public()) != validator.public_key.trim_start_matches("0x") {
            return Err(at(ValidatorProblem::PublicKey));
        }
        if sharing.required() != lock.threshold {
            return Err(at(ValidatorProblem::Threshold));
        }
        let expected = sharing
            .partial_public(participant)
            .map_err(|err| at(ValidatorProblem::NoShare(err.to_string())))?;
        if sharings.iter().any(|(seen, _)| *seen == validator.index) {
            return Err(at(ValidatorProblem::Duplicate));
        }
        sharings.push((validator.index, sharing.clone()));
        let path = share_file(&config.shares_dir, validator.index);
        let file = |problem| KeysError::Share {
            path: path.clone(),
            problem,
        };
        let bytes = files::read_secret(&path).map_err(KeysError::ShareFile)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| file(ShareProblem::NotUtf8))?;
        let keystore = Keystore::from_json(text).map_err(|err| file(err.into()))?;
        let secret = eip2335::decrypt(&keystore, &password).map_err(|err| file(err.into()))?;
        let private = Private::decode(Copying(secret.as_slice()))
            .map_err(|err| file(ShareProblem::NotBls(err)))?;
        let share = Share::new(participant, private);
        if share.public::<MinPk>() != expected {
            return Err(file(ShareProblem::Foreign {
                operator: index,
                validator: validator.index,
            }));
        }
        shares.insert(validator.index, ValidatorShare { sharing, share });
    }
    let avs = match &lock.avs {
        None => None,
        Some(locked) => Some(load_avs_share(
            locked,
            lock.threshold,
            participants.len(),
            index,
            lock_path,
            &config.shares_dir,
            &password,
        )?),
    };
    // The lock as decoded, in its own order: what every operator of the cluster must hold.
    let lock_hash = LockHash::of(
        &lock.name,
        lock.threshold,
        &participants,
        sharings.iter().map(|(index, sharing)| (*index, sharing)),
    );
    let lock_hash = match &avs {
        None => lock_hash,
        Some(avs) => LockedAvsKey::bind(&avs.sharing, lock_hash),
    };
    Ok(Loaded {
        key,
        cluster: ClusterIdentity::new(lock.name, lock_hash),
        index,
        participants,
        shares: Arc::new(shares),
        avs,
    })
}

/// Checks the lock's AVS section and reads this operator's share of it, which must be the
/// share the section names for it.
fn load_avs_share(
    locked: &LockedAvsKey,
    threshold: u32,
    operators: usize,
    index: usize,
    lock_path: &Path,
    shares_dir: &Path,
    password: &str,
) -> Result<AvsShare, KeysError> {
    let sharing = locked
        .sharing(threshold, operators)
        .map_err(|problem| KeysError::AvsKey {
            path: lock_path.to_path_buf(),
            problem,
        })?;
    let path = avs_share_file(shares_dir);
    let file = |problem| KeysError::AvsShare {
        path: path.clone(),
        problem,
    };
    let bytes = files::read_secret(&path).map_err(KeysError::ShareFile)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| file(AvsShareProblem::NotUtf8))?;
    let keystore = Keystore::from_json(text).map_err(|err| file(err.into()))?;
    let secret = eip2335::decrypt(&keystore, password).map_err(|err| file(err.into()))?;
    let share = Bn254SecretShare::from_be_bytes(index as u32, &secret)
        .map_err(|err| file(AvsShareProblem::NotBn254(err)))?;
    if sharing.share_public_key(index as u32) != Some(&share.public_key()) {
        return Err(file(AvsShareProblem::Foreign { operator: index }));
    }
    Ok(AvsShare {
        sharing: Arc::new(sharing),
        share,
    })
}

/// The cluster AVS key `cohort cluster init` splits.
pub enum AvsKey {
    /// A fresh key, drawn while splitting and never written whole.
    Fresh,
    /// An existing key (the operator's BN254 key, as the supervisor reads it).
    Existing(Bn254Key),
}

/// Whose keys a new cluster splits.
pub enum Validators {
    /// Interop validator indices, split afresh (on a dev chain their index is their position).
    Interop(std::ops::Range<u64>),
    /// Existing validators' whole secrets, each at its chain index, read from keystores. Each
    /// secret is wiped when the plan drops.
    Imported(Vec<crate::import::IndexedKey>),
}

impl Validators {
    fn count(&self) -> usize {
        match self {
            Self::Interop(range) => range.clone().count(),
            Self::Imported(keys) => keys.len(),
        }
    }
}

/// What `cohort cluster init` builds.
pub struct InitPlan {
    pub out: PathBuf,
    pub name: String,
    pub operators: usize,
    pub validators: Validators,
    pub host: String,
    /// Where /metrics and /health are served (loopback unless the operator chose otherwise).
    pub metrics_host: String,
    pub base_port: u16,
    pub metrics_base_port: u16,
    pub genesis_time: u64,
    pub slot_seconds: u64,
    pub slots_per_epoch: u64,
    pub kdf: Kdf,
    pub beacon: config::Beacon,
    pub beacon_nodes: Vec<String>,
    /// A cluster BN254 AVS key to split among the operators, if any.
    pub avs: Option<AvsKey>,
}

/// Writes a whole cluster's keys and configs under `plan.out`: `cluster-lock.json` and one
/// `operator-<i>/` per operator with `operator.toml`, `identity.key`, `password.txt` and
/// `shares/share-<v>.json`. Validators are the devnet's interop validators or imported keys,
/// split afresh.
pub fn init_cluster(plan: &InitPlan) -> Result<Vec<PathBuf>, String> {
    let n = plan.operators;
    if !config::is_cluster_size(n) {
        return Err(format!(
            "--operators {n}: a cluster has 3f+1 operators (4, 7, 10, 13)"
        ));
    }
    if plan.validators.count() == 0 {
        return Err("--validators must name at least one validator".into());
    }
    if plan.out.exists()
        && std::fs::read_dir(&plan.out)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(format!(
            "{} exists and is not empty; refusing to overwrite keys (choose another --out)",
            plan.out.display()
        ));
    }
    let mut rng = cohort_keystore::os_rng();
    let identities: Vec<PrivateKey> = (0..n).map(|_| identity::generate(&mut rng)).collect();
    // Share order is the sorted order of public keys (the order consensus uses).
    let participants: Set<PublicKey> = identities
        .iter()
        .map(|key| key.public_key())
        .try_collect()
        .map_err(|_| "two generated identities collided".to_string())?;
    let mut by_position: Vec<PrivateKey> = Vec::with_capacity(n);
    for public in participants.iter() {
        let key = identities
            .iter()
            .find(|key| key.public_key() == *public)
            .ok_or("an identity went missing")?;
        by_position.push(key.clone());
    }

    let write = |path: &Path, bytes: &[u8]| {
        files::write_secret(path, bytes).map_err(|err| format!("{}: {err}", path.display()))
    };
    let mkdir = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|err| format!("{}: {err}", path.display()))
    };
    mkdir(&plan.out)?;
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| plan.out.join(format!("operator-{i}")))
        .collect();
    // Every secret below lives in a buffer that is wiped when dropped: the passwords, their
    // random bytes and each share's encoding.
    let mut passwords: Vec<Zeroizing<String>> = Vec::with_capacity(n);
    for (i, dir) in dirs.iter().enumerate() {
        mkdir(&dir.join("shares"))?;
        // Only the operator's own user may even list its secrets.
        for private in [dir.clone(), dir.join("shares")] {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
                .map_err(|err| format!("{}: {err}", private.display()))?;
        }
        identity::save(&dir.join("identity.key"), &by_position[i])
            .map_err(|err| format!("{}: {err}", dir.join("identity.key").display()))?;
        let mut bytes = Zeroizing::new([0u8; 24]);
        rand::Rng::fill_bytes(&mut rng, &mut *bytes);
        let mut password = Zeroizing::new(String::with_capacity(2 * bytes.len()));
        for byte in bytes.iter() {
            use std::fmt::Write as _;
            let _ = write!(password, "{byte:02x}");
        }
        let mut line = Zeroizing::new(String::with_capacity(password.len() + 1));
        line.push_str(&password);
        line.push('\n');
        write(&dir.join("password.txt"), line.as_bytes())?;
        passwords.push(password);
    }

    let mut validators = Vec::new();
    let to_split: Vec<(u64, Option<&Private>)> = match &plan.validators {
        Validators::Interop(range) => range.clone().map(|index| (index, None)).collect(),
        Validators::Imported(keys) => keys
            .iter()
            .map(|key| (key.index, Some(&key.key.secret)))
            .collect(),
    };
    for (validator, secret) in to_split {
        let split = match secret {
            None => keys::split_interop(&mut rng, validator, n as u32),
            Some(secret) => keys::split(&mut rng, secret, n as u32, N3f1::quorum(n as u32)),
        }
        .map_err(|err| format!("splitting validator {validator}: {err}"))?;
        validators.push(LockedValidator {
            index: validator,
            public_key: keys::to_hex(&split.public_key()),
            sharing: keys::to_hex(&split.sharing),
        });
        for (i, dir) in dirs.iter().enumerate() {
            let share = &split.shares[i];
            // Written straight into a wiped buffer sized once (no reallocation leaves a copy).
            let mut secret = Zeroizing::new(Vec::with_capacity(share.private.encode_size()));
            share.private.write(&mut *secret);
            let keystore = eip2335::encrypt(
                &secret,
                &passwords[i],
                &keys::to_hex(&share.public::<MinPk>()),
                "",
                plan.kdf,
                &mut rng,
            )
            .map_err(|err| format!("encrypting validator {validator}'s share: {err}"))?;
            write(
                &share_file(&dir.join("shares"), validator),
                keystore.to_json_pretty().as_bytes(),
            )?;
        }
    }
    let avs = match &plan.avs {
        None => None,
        Some(avs) => {
            let fresh;
            let key = match avs {
                AvsKey::Fresh => {
                    fresh = Bn254Key::generate(&mut rng);
                    &fresh
                }
                AvsKey::Existing(key) => key,
            };
            let split = cohort_avs_crypto::bn254::threshold::split_with_threshold(
                &mut rng,
                key,
                n as u32,
                N3f1::quorum(n as u32),
            )
            .map_err(|err| format!("splitting the AVS key: {err}"))?;
            for (i, dir) in dirs.iter().enumerate() {
                let share = &split.shares[i];
                let keystore = eip2335::encrypt(
                    &*share.to_be_bytes(),
                    &passwords[i],
                    &alloy_primitives::hex::encode(share.public_key().to_bytes()),
                    "",
                    plan.kdf,
                    &mut rng,
                )
                .map_err(|err| format!("encrypting the AVS key's share: {err}"))?;
                write(
                    &avs_share_file(&dir.join("shares")),
                    keystore.to_json_pretty().as_bytes(),
                )?;
            }
            Some(LockedAvsKey::of(&split.sharing))
        }
    };
    let operators_hex: Vec<String> = participants.iter().map(identity::public_key_hex).collect();
    let lock = Lock {
        name: plan.name.clone(),
        threshold: N3f1::quorum(n as u32),
        operators: operators_hex.clone(),
        validators,
        avs,
    };
    let lock_text = serde_json::to_string_pretty(&lock).map_err(|err| err.to_string())?;
    let lock_path = plan.out.join("cluster-lock.json");
    std::fs::write(&lock_path, lock_text)
        .map_err(|err| format!("{}: {err}", lock_path.display()))?;

    let mut configs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        std::fs::copy(&lock_path, dir.join("cluster-lock.json"))
            .map_err(|err| format!("{}: {err}", dir.display()))?;
        let file = config::File {
            identity_key: "identity.key".into(),
            data_dir: "data".into(),
            listen: format!("{}:{}", plan.host, plan.base_port as usize + i),
            metrics_listen: format!(
                "{}:{}",
                plan.metrics_host,
                plan.metrics_base_port as usize + i
            ),
            stop_timeout_seconds: 30,
            crypto_threads: None,
            avs: None,
            cluster: config::Cluster {
                name: plan.name.clone(),
                genesis_time: plan.genesis_time,
                slot_seconds: plan.slot_seconds,
                slots_per_epoch: plan.slots_per_epoch,
                operators: operators_hex
                    .iter()
                    .enumerate()
                    .map(|(j, key)| config::Operator {
                        public_key: key.clone(),
                        address: format!("{}:{}", plan.host, plan.base_port as usize + j),
                    })
                    .collect(),
            },
            shares: config::Shares {
                lock: "cluster-lock.json".into(),
                dir: "shares".into(),
                password_file: "password.txt".into(),
            },
            beacon_nodes: plan.beacon_nodes.clone(),
            beacon: plan.beacon.clone(),
            engine: config::Engine::default(),
            p2p: Default::default(),
        };
        let text = toml::to_string_pretty(&file).map_err(|err| err.to_string())?;
        let path = dir.join("operator.toml");
        std::fs::write(
            &path,
            format!(
                "# Operator {i} of cluster `{}`, written by `cohort cluster init`.\n\
                 # Every field is described in operator.example.toml.\n\n{}\n",
                plan.name,
                text.trim_end()
            ),
        )
        .map_err(|err| format!("{}: {err}", path.display()))?;
        configs.push(path);
    }
    Ok(configs)
}

/// Now plus `delay`, in unix seconds: a fresh cluster's genesis.
pub fn genesis_after(delay: Duration) -> u64 {
    (SystemTime::now() + delay)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cohort-keys-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    pub(crate) fn plan(out: PathBuf) -> InitPlan {
        InitPlan {
            out,
            name: "test".into(),
            operators: 4,
            validators: Validators::Interop(0..3),
            host: "127.0.0.1".into(),
            metrics_host: "127.0.0.1".into(),
            base_port: 19000,
            metrics_base_port: 19100,
            genesis_time: 1_800_000_000,
            slot_seconds: 12,
            slots_per_epoch: 32,
            kdf: Kdf::light(),
            beacon: config::Beacon {
                seed: 1,
                ..Default::default()
            },
            beacon_nodes: Vec::new(),
            avs: None,
        }
    }

    #[test]
    fn every_operator_of_a_fresh_cluster_loads_its_own_shares() {
        use std::os::unix::fs::PermissionsExt as _;
        let out = temp("init");
        let configs = init_cluster(&plan(out.clone())).expect("cluster init");
        assert_eq!(configs.len(), 4);
        let mut positions = Vec::new();
        for path in &configs {
            let config = config::load(path, Vec::new()).expect("written config is valid");
            let loaded = load(&config).expect("keys load");
            assert_eq!(loaded.shares.len(), 3);
            positions.push(loaded.index);
            let mode = std::fs::metadata(share_file(&config.shares_dir, 0))
                .expect("share exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        positions.sort();
        assert_eq!(
            positions,
            vec![0, 1, 2, 3],
            "each operator holds its own position"
        );

        // Threshold-many shares of any validator recover its interop key's signature.
        let root = [7u8; 32];
        let shares: Vec<ValidatorShare> = configs
            .iter()
            .take(3)
            .map(|path| {
                let config = config::load(path, Vec::new()).expect("valid");
                load(&config).expect("keys load").shares[&2].clone()
            })
            .collect();
        let partials: Vec<_> = shares
            .iter()
            .map(|s| keys::sign_partial(&s.share, &root))
            .collect();
        let signature = keys::recover(&shares[0].sharing, &root, &partials)
            .0
            .expect("quorum recovers");
        assert_eq!(signature, keys::sign(&keys::interop_secret(2), &root));

        assert!(
            init_cluster(&plan(out.clone())).is_err(),
            "a second init into the same directory must not overwrite keys"
        );
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_world_readable_share_or_wrong_password_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let out = temp("refuse");
        let configs = init_cluster(&plan(out.clone())).expect("cluster init");
        let config = config::load(&configs[0], Vec::new()).expect("valid");
        let share = share_file(&config.shares_dir, 1);
        std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load(&config).err().expect("world-readable share refused");
        assert!(
            matches!(err, KeysError::ShareFile(SecretFileError::Exposed { .. })),
            "{err}"
        );
        let err = err.to_string();
        assert!(
            err.contains("chmod 600") && err.contains("share-1.json"),
            "{err}"
        );
        std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o600)).expect("chmod");

        files::write_secret(&config.password_file, b"wrong\n").expect("write password");
        let err = load(&config).err().expect("wrong password refused");
        assert!(
            matches!(
                err,
                KeysError::Share {
                    problem: ShareProblem::Keystore(KeystoreError::WrongPassword),
                    ..
                }
            ),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("share-0.json"), "{err}");

        // Another operator's keystore in this operator's directory is caught.
        let other = config::load(&configs[1], Vec::new()).expect("valid");
        std::fs::copy(&other.password_file, &config.password_file).expect("copy password");
        std::fs::copy(
            share_file(&other.shares_dir, 0),
            share_file(&config.shares_dir, 0),
        )
        .expect("copy share");
        let err = load(&config).err().expect("foreign share refused");
        assert!(
            matches!(
                err,
                KeysError::Share {
                    problem: ShareProblem::Foreign { validator: 0, .. },
                    ..
                }
            ),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("not operator"), "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn the_lock_must_name_this_cluster_and_its_hash_binds_the_namespaces() {
        let out = temp("lock");
        let configs = init_cluster(&plan(out.clone())).expect("cluster init");
        let config = config::load(&configs[0], Vec::new()).expect("valid");
        let other = config::load(&configs[1], Vec::new()).expect("valid");
        let honest = load(&other).expect("keys load").cluster;
        assert_eq!(load(&config).expect("keys load").cluster, honest);

        // A lock of another name is refused, naming both.
        let text = std::fs::read_to_string(&config.lock).expect("lock");
        let mut lock: Lock = serde_json::from_str(&text).expect("lock parses");
        lock.name = "other".into();
        std::fs::write(&config.lock, serde_json::to_string(&lock).expect("json")).expect("write");
        let err = load(&config).err().expect("renamed lock refused");
        assert!(matches!(err, KeysError::LockName { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("`other`") && err.contains("`test`"), "{err}");

        // Two of three validators removed: every share still checks out, so the lock loads, but
        // its hash is not the cluster's, and neither is any namespace derived from it: this
        // operator can neither connect to the others nor vote with them.
        lock.name = "test".into();
        lock.validators.truncate(1);
        std::fs::write(&config.lock, serde_json::to_string(&lock).expect("json")).expect("write");
        let tampered = load(&config)
            .expect("a lock with fewer validators loads")
            .cluster;
        assert_ne!(tampered.lock_hash, honest.lock_hash);
        assert_ne!(tampered.p2p_namespace(), honest.p2p_namespace());
        assert_ne!(tampered.consensus_namespace(), honest.consensus_namespace());

        // Reformatting the file changes nothing: the hash is of the lock, not of its bytes.
        let pretty: Lock = serde_json::from_str(&text).expect("lock parses");
        std::fs::write(&config.lock, serde_json::to_string(&pretty).expect("json")).expect("write");
        assert_eq!(load(&config).expect("keys load").cluster, honest);
        let _ = std::fs::remove_dir_all(&out);
    }
    fn avs_key() -> Bn254Key {
        Bn254Key::from_be_bytes(&alloy_primitives::keccak256(b"cluster avs key").0[1..])
            .expect("31 bytes are below the order")
    }

    fn read_lock(path: &Path) -> Lock {
        serde_json::from_str(&std::fs::read_to_string(path).expect("lock")).expect("lock parses")
    }

    #[test]
    fn an_existing_avs_key_split_at_init_signs_exactly_as_the_whole_key() {
        use cohort_avs_crypto::{B256, HashedMessage, keccak256};
        use std::os::unix::fs::PermissionsExt as _;
        let out = temp("avs");
        let key = avs_key();
        let mut plan = plan(out.clone());
        plan.avs = Some(AvsKey::Existing(key.clone()));
        let configs = init_cluster(&plan).expect("cluster init");

        // The lock's AVS key is the key that was split, in both groups.
        let lock = read_lock(&out.join("cluster-lock.json"));
        let locked = lock.avs.clone().expect("an avs section");
        assert_eq!(
            locked.public_key,
            alloy_primitives::hex::encode(key.public_key().to_bytes())
        );
        assert_eq!(
            locked.public_key_g1,
            alloy_primitives::hex::encode(key.g1_public_key().to_bytes())
        );
        assert_eq!(locked.shares.len(), 4);

        // Every operator reloads its lock and its own share; any 3 shares sign a task result
        // exactly as the whole key does, and the aggregator's check against the lock's key
        // passes.
        let mut loaded = Vec::new();
        for path in &configs {
            let config = config::load(path, Vec::new()).expect("valid");
            let mode = std::fs::metadata(avs_share_file(&config.shares_dir))
                .expect("share written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let keys = load(&config).expect("keys load");
            let avs = keys.avs.clone().expect("an AVS share");
            assert_eq!(avs.share.operator(), keys.index as u32);
            assert_eq!(avs.sharing.group_public_key(), key.public_key());
            loaded.push(keys);
        }
        let hashes: Vec<LockHash> = loaded.iter().map(|l| l.cluster.lock_hash).collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
        let message_hash = keccak256(b"output");
        let message = HashedMessage::certificate(1_760_000_000, &message_hash);
        let whole = cohort_avs_crypto::sign_result_bn254(&key, 1_760_000_000, &message_hash);
        let lock_key = Bn254PublicKey::from_bytes(
            &alloy_primitives::hex::decode(&locked.public_key).expect("hex"),
        )
        .expect("G2 key");
        for skip in 0..4 {
            let partials: Vec<_> = loaded
                .iter()
                .filter(|l| l.index != skip)
                .map(|l| l.avs.as_ref().expect("share").share.sign(&message))
                .collect();
            let sharing = &loaded[0].avs.as_ref().expect("share").sharing;
            let combined = sharing
                .combine_verified(&message, &partials)
                .expect("3 of 4");
            assert_eq!(combined.signature, whole, "without operator {skip}");
            cohort_avs_crypto::verify_result_bn254(
                &lock_key,
                1_760_000_000,
                &B256::from(message_hash),
                &combined.signature,
            )
            .expect("the aggregator accepts it");
        }

        // The AVS key is part of what the cluster agrees on: without it, another hash.
        let sharings: Vec<(u64, Sharing<MinPk>)> = lock
            .validators
            .iter()
            .map(|v| (v.index, decode_sharing(&v.sharing, 4).expect("sharing")))
            .collect();
        let without = LockHash::of(
            &lock.name,
            lock.threshold,
            &loaded[0].participants,
            sharings.iter().map(|(i, s)| (*i, s)),
        );
        assert_ne!(loaded[0].cluster.lock_hash, without);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_fresh_avs_key_is_split_and_never_written_whole() {
        let out = temp("avs-fresh");
        let mut plan = plan(out.clone());
        plan.avs = Some(AvsKey::Fresh);
        let configs = init_cluster(&plan).expect("cluster init");
        let lock = read_lock(&out.join("cluster-lock.json"));
        let locked = lock.avs.expect("an avs section");
        let sharing = locked.sharing(3, 4).expect("consistent");
        // No file anywhere holds a key whose public key is the group's: only shares exist.
        for path in &configs {
            let config = config::load(path, Vec::new()).expect("valid");
            let keys = load(&config).expect("keys load");
            let share = keys.avs.expect("share").share;
            assert_ne!(&share.public_key(), sharing.group_public_key());
        }
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_lock_without_an_avs_section_loads_with_its_old_hash() {
        let out = temp("avs-none");
        let configs = init_cluster(&plan(out.clone())).expect("cluster init");
        let text = std::fs::read_to_string(out.join("cluster-lock.json")).expect("lock");
        assert!(!text.contains("\"avs\""), "no section written: {text}");
        let config = config::load(&configs[0], Vec::new()).expect("valid");
        let loaded = load(&config).expect("a lock without an AVS key loads");
        assert!(loaded.avs.is_none());
        // Its hash is the one `LockHash::of` always gave: existing clusters keep their
        // namespaces.
        let lock: Lock = serde_json::from_str(&text).expect("lock parses");
        let sharings: Vec<(u64, Sharing<MinPk>)> = lock
            .validators
            .iter()
            .map(|v| (v.index, decode_sharing(&v.sharing, 4).expect("sharing")))
            .collect();
        let old = LockHash::of(
            &lock.name,
            lock.threshold,
            &loaded.participants,
            sharings.iter().map(|(i, s)| (*i, s)),
        );
        assert_eq!(loaded.cluster.lock_hash, old);
        // An explicit `null` is the same as no section.
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
        value["avs"] = serde_json::Value::Null;
        std::fs::write(&config.lock, value.to_string()).expect("write");
        assert_eq!(load(&config).expect("loads").cluster.lock_hash, old);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn a_tampered_avs_section_or_foreign_avs_share_is_refused() {
        let out = temp("avs-refuse");
        let mut plan = plan(out.clone());
        plan.avs = Some(AvsKey::Existing(avs_key()));
        let configs = init_cluster(&plan).expect("cluster init");
        let config = config::load(&configs[0], Vec::new()).expect("valid");
        let original = std::fs::read_to_string(&config.lock).expect("lock");

        // A share key swapped for another operator's: off the polynomial.
        let mut lock: Lock = serde_json::from_str(&original).expect("lock");
        let avs = lock.avs.as_mut().expect("section");
        avs.shares[3] = avs.shares[2].clone();
        std::fs::write(&config.lock, serde_json::to_string(&lock).expect("json")).expect("write");
        let err = load(&config).err().expect("tampered share key refused");
        assert!(matches!(err, KeysError::AvsKey { .. }), "{err}");
        assert!(err.to_string().contains("operator 3"), "{err}");

        // Another group key: the shares no longer interpolate to it.
        let mut lock: Lock = serde_json::from_str(&original).expect("lock");
        let other = Bn254Key::from_be_bytes(&[9]).expect("key");
        let avs = lock.avs.as_mut().expect("section");
        avs.public_key = alloy_primitives::hex::encode(other.public_key().to_bytes());
        avs.public_key_g1 = alloy_primitives::hex::encode(other.g1_public_key().to_bytes());
        std::fs::write(&config.lock, serde_json::to_string(&lock).expect("json")).expect("write");
        let err = load(&config).err().expect("another group key refused");
        assert!(matches!(err, KeysError::AvsKey { .. }), "{err}");

        // Not hex, and a share missing.
        let mut lock: Lock = serde_json::from_str(&original).expect("lock");
        lock.avs.as_mut().expect("section").public_key = "zz".into();
        std::fs::write(&config.lock, serde_json::to_string(&lock).expect("json")).expect("write");
        let err = load(&config).err().expect("bad hex refused").to_string();
        assert!(err.contains("public_key is not hex"), "{err}");
        let mut lock: Lock = serde_json::from_str(&original).expect("lock");
        lock.avs.as_mut().expect("section").shares.pop();
        std::fs::write(&config.lock, serde_json::to_string(&lock).expect("json")).expect("write");
        let err = load(&config)
            .err()
            .expect("short section refused")
            .to_string();
        assert!(err.contains("3 share keys for 4 operators"), "{err}");

        // The untouched lock loads; with another operator's AVS share (re-encrypted under this
        // operator's password, so only the key itself is wrong) it does not.
        std::fs::write(&config.lock, &original).expect("write");
        load(&config).expect("the original loads");
        let mine = config;
        let theirs = config::load(&configs[1], Vec::new()).expect("valid");
        let keystore: Keystore = Keystore::from_json(
            &std::fs::read_to_string(avs_share_file(&theirs.shares_dir)).expect("share"),
        )
        .expect("keystore");
        let password = files::read_password(&theirs.password_file).expect("password");
        let secret = eip2335::decrypt(&keystore, &password).expect("decrypts");
        let mine_password = files::read_password(&mine.password_file).expect("password");
        let reencrypted = eip2335::encrypt(
            &secret,
            &mine_password,
            &keystore.pubkey,
            "",
            Kdf::light(),
            &mut cohort_keystore::os_rng(),
        )
        .expect("encrypt");
        files::write_secret(
            &avs_share_file(&mine.shares_dir),
            reencrypted.to_json_pretty().as_bytes(),
        )
        .expect("write");
        let err = load(&mine)
            .err()
            .expect("another operator's AVS share refused");
        assert!(
            matches!(
                err,
                KeysError::AvsShare {
                    problem: AvsShareProblem::Foreign { operator: 0 },
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_file(avs_share_file(&mine.shares_dir)).expect("remove");
        let err = load(&mine).err().expect("missing AVS share refused");
        assert!(err.to_string().contains("avs-share.json"), "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
