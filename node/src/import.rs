//! `cohort cluster init --import-keystores DIR`: validators that already exist, brought in as the
//! EIP-2335 keystores the standard deposit tools write, and split t-of-n like interop keys.
//!
//! Each keystore is decrypted, its secret checked against the `pubkey` the keystore states (a
//! keystore whose secret is not the validator its file claims would have the cluster sign for
//! someone else, or for no one), and held only as a [Private], which zeroizes itself when
//! dropped. [crate::keys::init_cluster] splits each secret and drops it; the encrypted shares are
//! all that reaches disk.

use cohort_ingress::keys::{self, ValidatorPublicKey};
use cohort_keystore::{
    eip2335::{self, Keystore, KeystoreError},
    files::{self, SecretFileError},
};
use commonware_codec::{Copying, DecodeExt as _};
use commonware_cryptography::bls12381::primitives::{group::Private, ops, variant::MinPk};
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};
use zeroize::Zeroizing;

/// A validator secret read from a keystore, with the file it came from (for errors).
///
/// Not `Clone`: there is exactly one copy of the whole secret, and it is wiped when this drops.
pub struct ImportedKey {
    pub file: PathBuf,
    pub public_key: ValidatorPublicKey,
    pub secret: Private,
}

impl std::fmt::Debug for ImportedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedKey")
            .field("file", &self.file)
            .field("public_key", &keys::to_hex(&self.public_key))
            .finish_non_exhaustive()
    }
}

/// An imported key placed at its validator index.
#[derive(Debug)]
pub struct IndexedKey {
    pub index: u64,
    pub key: ImportedKey,
}

/// Why a keystore directory cannot be imported. Each variant names the directory or file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("--import-keystores {}: {source}", dir.display())]
    Dir { dir: PathBuf, source: io::Error },
    #[error(
        "--import-keystores {}: no keystore in it (expected EIP-2335 *.json files, as the \
         deposit tools write them)",
        dir.display()
    )]
    Empty { dir: PathBuf },
    #[error("--password-file: {0}")]
    Password(SecretFileError),
    #[error("password prompt: {0}")]
    Prompt(String),
    #[error("keystore {}: {problem}", path.display())]
    File { path: PathBuf, problem: FileProblem },
    #[error(
        "keystores {} and {} hold the same validator 0x{public_key}; import each validator once",
        first.display(),
        second.display()
    )]
    Duplicate {
        first: PathBuf,
        second: PathBuf,
        public_key: String,
    },
    #[error("keystore {}: validator 0x{public_key} {why}", path.display())]
    NoIndex {
        path: PathBuf,
        public_key: String,
        why: String,
    },
}

/// What is wrong with one keystore file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("cannot read it: {0}")]
    Unreadable(io::Error),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("the decrypted secret is not a BLS12-381 secret key: {0}")]
    NotBls(String),
    #[error("has no `pubkey`, so the decrypted key cannot be checked against its validator")]
    NoPubkey,
    #[error(
        "the decrypted key is validator 0x{derived}, not the keystore's pubkey 0x{stated}: the \
         keystore is corrupted or was edited"
    )]
    PubkeyMismatch { stated: String, derived: String },
}

/// The keystore files of `dir`: every `*.json` except the deposit tools' `deposit_data-*.json`,
/// in name order (so a run is repeatable). Sub-directories are not searched.
pub fn keystore_files(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let dir_err = |source| ImportError::Dir {
        dir: dir.into(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".json") || name.starts_with("deposit_data") || name.starts_with('.') {
            continue;
        }
        if entry.file_type().map_err(dir_err)?.is_file() {
            found.push(entry.path());
        }
    }
    if found.is_empty() {
        return Err(ImportError::Empty { dir: dir.into() });
    }
    found.sort();
    Ok(found)
}

/// Decrypts one keystore and checks that its secret is the validator its `pubkey` names.
pub fn read_keystore(path: &Path, password: &str) -> Result<ImportedKey, ImportError> {
    let fail = |problem| ImportError::File {
        path: path.into(),
        problem,
    };
    // A keystore is encrypted, and the deposit tools write them readable by group and others:
    // unlike a share keystore with its password beside it, read it whatever its mode.
    let bytes = std::fs::read(path).map_err(|err| fail(FileProblem::Unreadable(err)))?;
    let text = String::from_utf8(bytes).map_err(|_| fail(FileProblem::NotUtf8))?;
    let keystore = Keystore::from_json(&text).map_err(|err| fail(err.into()))?;
    let stated = keystore
        .pubkey
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if stated.is_empty() {
        return Err(fail(FileProblem::NoPubkey));
    }
    let plain: Zeroizing<Vec<u8>> =
        eip2335::decrypt(&keystore, password).map_err(|err| fail(err.into()))?;
    let secret = Private::decode(Copying(plain.as_slice()))
        .map_err(|err| fail(FileProblem::NotBls(err.to_string())))?;
    let public_key = ops::compute_public::<MinPk>(&secret);
    let derived = keys::to_hex(&public_key);
    if derived != stated {
        return Err(fail(FileProblem::PubkeyMismatch { stated, derived }));
    }
    Ok(ImportedKey {
        file: path.into(),
        public_key,
        secret,
    })
}

/// Decrypts every keystore of `dir` with one password (the deposit tools use one for a batch).
/// Stops at the first bad file: importing part of a batch would leave the operator to work out
/// which validators the cluster runs.
pub fn read_dir(dir: &Path, password: &str) -> Result<Vec<ImportedKey>, ImportError> {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut imported = Vec::new();
    for path in keystore_files(dir)? {
        let key = read_keystore(&path, password)?;
        let public_key = keys::to_hex(&key.public_key);
        if let Some(first) = seen.insert(public_key.clone(), path.clone()) {
            return Err(ImportError::Duplicate {
                first,
                second: path,
                public_key,
            });
        }
        imported.push(key);
    }
    Ok(imported)
}

/// The keystores' password: from `file`, or asked on the terminal without echo.
pub fn password(file: Option<&Path>) -> Result<Zeroizing<String>, ImportError> {
    match file {
        Some(path) => files::read_password(path).map_err(ImportError::Password),
        None => prompt("Password of the keystores to import: ").map_err(ImportError::Prompt),
    }
}

/// Reads one line from the terminal with echo off. Refuses when stdin is not a terminal, since
/// a password piped in by a script belongs in a `--password-file` of mode 0600 instead.
fn prompt(question: &str) -> Result<Zeroizing<String>, String> {
    use std::{io::Write as _, os::fd::AsRawFd as _};
    let stdin = io::stdin();
    let fd = stdin.as_raw_fd();
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(fd) } != 1 {
        return Err(
            "stdin is not a terminal; give the keystores' password with --password-file".into(),
        );
    }
    // SAFETY: termios is plain data, filled in by tcgetattr before it is read.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a terminal (checked above) and `saved` is a valid termios to fill.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(format!(
            "cannot read the terminal's settings: {}",
            io::Error::last_os_error()
        ));
    }
    let mut silent = saved;
    silent.c_lflag &= !libc::ECHO;
    silent.c_lflag |= libc::ECHONL;
    // SAFETY: as above; `silent` is a copy of the terminal's own settings.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &silent) } != 0 {
        return Err(format!(
            "cannot turn the terminal's echo off: {}",
            io::Error::last_os_error()
        ));
    }
    eprint!("{question}");
    let _ = io::stderr().flush();
    let mut line = Zeroizing::new(String::new());
    let read = stdin.read_line(&mut line);
    // SAFETY: restores the settings read above, whatever the read did.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|err| format!("cannot read the password: {err}"))?;
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    if line.is_empty() {
        return Err("empty password".into());
    }
    Ok(line)
}

/// Places each key at its validator index: the index the chain gives its public key when
/// `chain` is given, else (the embedded devnet beacon, whose validators are the interop ones)
/// its interop index within `interop`. A key the chain or devnet does not know is refused: the
/// cluster would have no duties for it, or would sign duties for another validator.
pub fn place(
    imported: Vec<ImportedKey>,
    chain: Option<&BTreeMap<String, u64>>,
    interop: std::ops::Range<u64>,
) -> Result<Vec<IndexedKey>, ImportError> {
    let interop_keys: BTreeMap<String, u64> = if chain.is_some() {
        BTreeMap::new()
    } else {
        interop
            .clone()
            .map(|index| {
                let public = ops::compute_public::<MinPk>(&keys::interop_secret(index));
                (keys::to_hex(&public), index)
            })
            .collect()
    };
    let mut placed = Vec::with_capacity(imported.len());
    for key in imported {
        let public_key = keys::to_hex(&key.public_key);
        let index = match chain {
            Some(chain) => chain.get(&public_key).copied().ok_or_else(|| {
                "is not on the chain the beacon nodes follow (not deposited, or the deposit not \
                 processed yet); only validators the chain knows can be imported"
                    .to_string()
            }),
            None => interop_keys.get(&public_key).copied().ok_or_else(|| {
                format!(
                    "is not one of the embedded devnet's interop validators {}..{}, the only \
                     validators its beacon knows; pass --beacon-node to import a validator of \
                     a real chain",
                    interop.start, interop.end
                )
            }),
        };
        match index {
            Ok(index) => placed.push(IndexedKey { index, key }),
            Err(why) => {
                return Err(ImportError::NoIndex {
                    path: key.file.clone(),
                    public_key,
                    why,
                });
            }
        }
    }
    placed.sort_by_key(|placed| placed.index);
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_keystore::eip2335::Kdf;
    use rand::{SeedableRng as _, rngs::StdRng};

    /// The EIP-2335 test vectors' password, secret and public key.
    pub(crate) const VECTOR_PASSWORD: &str = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑";
    pub(crate) const VECTOR_PUBKEY: &str = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07";

    pub(crate) fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cohort-import-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// A light keystore of interop validator `index`, as a deposit tool would write it.
    pub(crate) fn interop_keystore(index: u64, password: &str, rng: &mut StdRng) -> String {
        let secret = keys::interop_secret(index);
        let public = ops::compute_public::<MinPk>(&secret);
        use commonware_codec::Encode as _;
        eip2335::encrypt(
            &secret.encode(),
            password,
            &keys::to_hex(&public),
            &format!("m/12381/3600/{index}/0/0"),
            Kdf::light(),
            rng,
        )
        .expect("light kdf is within limits")
        .to_json_pretty()
    }

    #[test]
    fn files_skip_deposit_data_and_are_sorted() {
        let dir = temp("files");
        for name in [
            "b.json",
            "a.json",
            "deposit_data-1.json",
            "notes.txt",
            ".hidden.json",
        ] {
            std::fs::write(dir.join(name), "{}").expect("write");
        }
        std::fs::create_dir(dir.join("sub.json")).expect("mkdir");
        let files = keystore_files(&dir).expect("two keystores");
        assert_eq!(files, vec![dir.join("a.json"), dir.join("b.json")]);

        let empty = temp("files-empty");
        assert!(matches!(
            keystore_files(&empty),
            Err(ImportError::Empty { .. })
        ));
        let err = keystore_files(&empty.join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&empty);
    }

    #[test]
    fn interop_keys_are_placed_at_their_index_and_others_refused() {
        let dir = temp("place");
        let mut rng = StdRng::seed_from_u64(1);
        for index in [5u64, 2] {
            std::fs::write(
                dir.join(format!("keystore-{index}.json")),
                interop_keystore(index, "pw", &mut rng),
            )
            .expect("write");
        }
        let imported = read_dir(&dir, "pw").expect("imports");
        assert_eq!(imported.len(), 2);
        let placed = place(imported, None, 0..8).expect("interop keys");
        let indices: Vec<u64> = placed.iter().map(|p| p.index).collect();
        assert_eq!(indices, vec![2, 5]);

        // Outside the devnet's range: no duties would ever come for it.
        let imported = read_dir(&dir, "pw").expect("imports");
        let err = place(imported, None, 0..4).unwrap_err();
        assert!(matches!(err, ImportError::NoIndex { .. }), "{err}");
        assert!(err.to_string().contains("keystore-5.json"), "{err}");

        // A chain's index wins over the interop one, and a key the chain lacks is refused.
        let imported = read_dir(&dir, "pw").expect("imports");
        let public =
            |index| keys::to_hex(&ops::compute_public::<MinPk>(&keys::interop_secret(index)));
        let chain: BTreeMap<String, u64> = [(public(2), 900), (public(5), 77)].into();
        let placed = place(imported, Some(&chain), 0..0).expect("on the chain");
        let indices: Vec<u64> = placed.iter().map(|p| p.index).collect();
        assert_eq!(indices, vec![77, 900]);
        let imported = read_dir(&dir, "pw").expect("imports");
        let chain: BTreeMap<String, u64> = [(public(2), 900)].into();
        let err = place(imported, Some(&chain), 0..8).unwrap_err();
        assert!(err.to_string().contains("not on the chain"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_same_validator_twice_is_refused() {
        let dir = temp("duplicate");
        let mut rng = StdRng::seed_from_u64(2);
        std::fs::write(dir.join("a.json"), interop_keystore(3, "pw", &mut rng)).expect("write");
        std::fs::write(dir.join("b.json"), interop_keystore(3, "pw", &mut rng)).expect("write");
        let err = read_dir(&dir, "pw").unwrap_err();
        assert!(matches!(err, ImportError::Duplicate { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("a.json") && text.contains("b.json"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wrong_password_corruption_and_pubkey_mismatch_name_the_file() {
        let dir = temp("refusals");
        let mut rng = StdRng::seed_from_u64(3);
        let good = interop_keystore(1, "right", &mut rng);
        let path = dir.join("keystore-1.json");
        std::fs::write(&path, &good).expect("write");
        assert!(read_keystore(&path, "right").is_ok());

        let err = read_keystore(&path, "wrong").unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::File {
                    problem: FileProblem::Keystore(KeystoreError::WrongPassword),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("keystore-1.json"), "{err}");

        // A flipped ciphertext bit fails the checksum.
        let mut keystore = Keystore::from_json(&good).expect("parses");
        let mut bytes = keys::decode_hex(&keystore.crypto.cipher.message).expect("hex");
        bytes[3] ^= 0x10;
        keystore.crypto.cipher.message = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&path, keystore.to_json_pretty()).expect("write");
        let err = read_keystore(&path, "right").unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::File {
                    problem: FileProblem::Keystore(KeystoreError::WrongPassword),
                    ..
                }
            ),
            "{err}"
        );

        // Cut short: not JSON any more.
        std::fs::write(&path, &good[..good.len() / 2]).expect("write");
        let err = read_keystore(&path, "right").unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::File {
                    problem: FileProblem::Keystore(KeystoreError::Json(_)),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("keystore-1.json"), "{err}");

        // The secret decrypts but is another validator than the file says.
        let mut keystore = Keystore::from_json(&good).expect("parses");
        keystore.pubkey = keys::to_hex(&ops::compute_public::<MinPk>(&keys::interop_secret(2)));
        std::fs::write(&path, keystore.to_json_pretty()).expect("write");
        let err = read_keystore(&path, "right").unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::File {
                    problem: FileProblem::PubkeyMismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("keystore-1.json")
                && err.to_string().contains("not the keystore's pubkey"),
            "{err}"
        );

        keystore.pubkey = String::new();
        std::fs::write(&path, keystore.to_json_pretty()).expect("write");
        let err = read_keystore(&path, "right").unwrap_err();
        assert!(
            matches!(
                err,
                ImportError::File {
                    problem: FileProblem::NoPubkey,
                    ..
                }
            ),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // https://eips.ethereum.org/EIPS/eip-2335#test-cases
    const SCRYPT_VECTOR: &str = r#"{"crypto": {"kdf": {"function": "scrypt", "params": {"dklen": 32,
        "n": 262144, "p": 1, "r": 8,
        "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"}, "message": ""},
        "checksum": {"function": "sha256", "params": {},
        "message": "d2217fe5f3e9a1e34581ef8a78f7c9928e436d36dacc5e846690a5581e8ea484"},
        "cipher": {"function": "aes-128-ctr", "params": {"iv": "264daa3f303d7259501c93d997d84fe6"},
        "message": "06ae90d55fe0a6e9c5c3bc5b170827b2e5cce3929ed3f116c2811e6366dfe20f"}},
        "description": "This is a test keystore that uses scrypt to secure the secret.",
        "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
        "path": "m/12381/60/3141592653/589793238", "uuid": "1d85ae20-35c5-4611-98e8-aa14a633906f",
        "version": 4}"#;
    const PBKDF2_VECTOR: &str = r#"{"crypto": {"kdf": {"function": "pbkdf2", "params": {"dklen": 32,
        "c": 262144, "prf": "hmac-sha256",
        "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"}, "message": ""},
        "checksum": {"function": "sha256", "params": {},
        "message": "8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"},
        "cipher": {"function": "aes-128-ctr", "params": {"iv": "264daa3f303d7259501c93d997d84fe6"},
        "message": "cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"}},
        "description": "This is a test keystore that uses PBKDF2 to secure the secret.",
        "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
        "path": "m/12381/60/0/0", "uuid": "64625def-3331-4eea-ab6f-782f3ed16a83", "version": 4}"#;
    const VECTOR_SECRET: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";

    /// Writes a cluster of 4 from `keys` (placed at the chain indices in `chain`), then checks
    /// that every operator loads its shares and that any 3 of them sign, for each validator, a
    /// signature that verifies against the public key its keystore states.
    fn cluster_signs_as(name: &str, imported: Vec<ImportedKey>, chain: &BTreeMap<String, u64>) {
        use crate::{config, keys as cluster};
        let stated: BTreeMap<u64, String> = imported
            .iter()
            .map(|key| {
                (
                    chain[&keys::to_hex(&key.public_key)],
                    keys::to_hex(&key.public_key),
                )
            })
            .collect();
        let placed = place(imported, Some(chain), 0..0).expect("on the chain");
        let out = temp(name);
        std::fs::remove_dir_all(&out).expect("init wants a fresh directory");
        let mut plan = cluster::tests::plan(out.clone());
        plan.validators = cluster::Validators::Imported(placed);
        let configs = cluster::init_cluster(&plan).expect("cluster init from imported keys");
        drop(plan);

        let lock: cluster::Lock = serde_json::from_str(
            &std::fs::read_to_string(out.join("cluster-lock.json")).expect("lock written"),
        )
        .expect("lock parses");
        let locked: BTreeMap<u64, String> = lock
            .validators
            .iter()
            .map(|v| (v.index, v.public_key.clone()))
            .collect();
        assert_eq!(locked, stated, "the lock names the keystores' validators");

        let loaded: Vec<cluster::Loaded> = configs
            .iter()
            .map(|path| {
                let config = config::load(path, Vec::new()).expect("written config is valid");
                cluster::load(&config).expect("shares load")
            })
            .collect();
        let root = [0x3c; 32];
        for (index, public_hex) in &stated {
            let public = keys::public_key_from_hex(public_hex).expect("a G1 point");
            // Operators 1..4: not the first quorum, so any t of them recover the same signature.
            let shares: Vec<_> = loaded[1..]
                .iter()
                .map(|l| l.shares[index].clone())
                .collect();
            let partials: Vec<_> = shares
                .iter()
                .map(|s| keys::sign_partial(&s.share, &root))
                .collect();
            let signature = keys::recover(&shares[0].sharing, &root, &partials)
                .0
                .expect("a quorum recovers");
            assert!(
                keys::verify(&public, &root, &signature),
                "validator {index}"
            );
            // Two shares are not enough.
            assert!(
                keys::recover(&shares[0].sharing, &root, &partials[..2])
                    .0
                    .is_err()
            );
        }
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn eip_2335_vectors_import_and_the_cluster_signs_as_their_validator() {
        for (name, vector) in [("scrypt", SCRYPT_VECTOR), ("pbkdf2", PBKDF2_VECTOR)] {
            let dir = temp(&format!("vector-{name}"));
            std::fs::write(dir.join("keystore.json"), vector).expect("write");
            let imported = read_dir(&dir, VECTOR_PASSWORD).expect("the EIP's vector imports");
            assert_eq!(imported.len(), 1);
            assert_eq!(keys::to_hex(&imported[0].public_key), VECTOR_PUBKEY);
            let secret = keys::decode_hex(VECTOR_SECRET).expect("hex");
            let secret = Private::decode(Copying(secret.as_slice())).expect("scalar");
            let root = [9u8; 32];
            assert_eq!(
                keys::sign(&imported[0].secret, &root),
                keys::sign(&secret, &root),
                "{name}: the decrypted key is the vector's secret"
            );
            let chain = [(VECTOR_PUBKEY.to_string(), 42)].into();
            cluster_signs_as(&format!("vector-cluster-{name}"), imported, &chain);
            let _ = std::fs::remove_dir_all(&dir);
        }

        // Both vectors hold one validator: importing both at once is a duplicate.
        let dir = temp("vector-both");
        std::fs::write(dir.join("a.json"), SCRYPT_VECTOR).expect("write");
        std::fs::write(dir.join("b.json"), PBKDF2_VECTOR).expect("write");
        assert!(matches!(
            read_dir(&dir, VECTOR_PASSWORD),
            Err(ImportError::Duplicate { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deposit_tool_keystores_import_and_the_cluster_signs_as_their_validators() {
        // Written by ethstaker-deposit 1.3.1's own code (see generate.py beside them): one scrypt
        // and one pbkdf2 keystore, and the deposit data the tool writes into the same folder.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deposit-tool");
        let imported = read_dir(&dir, "cohort-import-test").expect("the deposit tool's keystores");
        assert_eq!(imported.len(), 2);

        let deposit_data = keystore_files(&dir).expect("listed").len().checked_sub(2);
        assert_eq!(
            deposit_data,
            Some(0),
            "deposit_data-*.json is not a keystore"
        );
        let deposit_file = std::fs::read_dir(&dir)
            .expect("fixture dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("deposit_data"))
            .expect("deposit data beside the keystores");
        let deposits: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(deposit_file.path()).expect("read"))
                .expect("deposit data is JSON");
        let mut deposited: Vec<String> = deposits
            .iter()
            .map(|d| d["pubkey"].as_str().expect("pubkey").to_string())
            .collect();
        let mut keys_read: Vec<String> = imported
            .iter()
            .map(|k| keys::to_hex(&k.public_key))
            .collect();
        deposited.sort();
        keys_read.sort();
        assert_eq!(
            keys_read, deposited,
            "the keys are the deposited validators"
        );

        let chain = keys_read
            .iter()
            .enumerate()
            .map(|(i, key)| (key.clone(), 1000 + i as u64))
            .collect();
        cluster_signs_as("deposit-tool-cluster", imported, &chain);
    }
}
