//! EIP-2335 (version 4) password-encrypted keystores.
//!
//! Validator secrets are exchanged with the rest of the Ethereum tooling (deposit CLIs, other
//! clients' importers) in this format, so we read and write exactly what the EIP specifies:
//! the KDF output's first 16 bytes key AES-128-CTR, and `sha256(dk[16..32] || ciphertext)` is
//! the checksum that tells a wrong password apart from a right one.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

const VERSION: u64 = 4;
const DKLEN: u64 = 32;
/// Scrypt at n = 2^20, r = 8 already needs 1 GiB; anything above is a keystore built to
/// exhaust the machine that opens it, not to protect a key.
const MAX_SCRYPT_N: u32 = 1 << 20;
const MAX_SCRYPT_MEMORY: u64 = 1 << 30;
const MAX_SCRYPT_P: u32 = 16;
/// Scrypt's work is n * r * p block mixes; the EIP's recommended cost (n = 2^18, r = 8,
/// p = 1) is 2^21. Four times that bounds a keystore to a few seconds of one core: within the
/// memory limit alone, n = 2^20, r = 8, p = 16 took 38 s per keystore, times the validators.
const STANDARD_SCRYPT_WORK: u64 = (1 << 18) * 8;
const MAX_SCRYPT_WORK: u64 = 4 * STANDARD_SCRYPT_WORK;
/// Four times the EIP's own PBKDF2 vector (c = 2^18), for the same reason.
const MAX_PBKDF2_C: u32 = 1 << 20;

/// Why a keystore could not be built or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("keystore is not valid EIP-2335 JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("keystore version {0} is not supported (only EIP-2335 version 4)")]
    UnsupportedVersion(String),
    #[error("keystore kdf function {0:?} is not supported (expected \"scrypt\" or \"pbkdf2\")")]
    UnsupportedKdf(String),
    #[error("keystore pbkdf2 prf {0:?} is not supported (expected \"hmac-sha256\")")]
    UnsupportedPrf(String),
    #[error("keystore checksum function {0:?} is not supported (expected \"sha256\")")]
    UnsupportedChecksum(String),
    #[error("keystore cipher function {0:?} is not supported (expected \"aes-128-ctr\")")]
    UnsupportedCipher(String),
    #[error("keystore kdf parameters refused: {0}")]
    UnsafeParams(String),
    #[error("keystore field {field} is malformed: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error("wrong password for keystore (or the keystore is corrupted): checksum mismatch")]
    WrongPassword,
}

/// Key derivation settings for new keystores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    Scrypt { n: u32, r: u32, p: u32 },
    Pbkdf2 { c: u32 },
}

impl Kdf {
    /// The EIP's recommended scrypt cost (n = 2^18, r = 8, p = 1: 256 MiB, about a second):
    /// what every key that guards real funds should use.
    pub const fn standard() -> Self {
        Self::Scrypt {
            n: 1 << 18,
            r: 8,
            p: 1,
        }
    }

    /// For local test clusters only: n = 2^12 (4 MiB) lets a devnet open dozens of keystores
    /// at start in milliseconds, and is far too cheap to protect anything of value.
    pub const fn light() -> Self {
        Self::Scrypt {
            n: 1 << 12,
            r: 8,
            p: 1,
        }
    }

    /// The same limits on both sides, so we never write a keystore we would refuse to open.
    fn check(&self) -> Result<(), KeystoreError> {
        let refuse = |why: String| Err(KeystoreError::UnsafeParams(why));
        match *self {
            Self::Scrypt { n, r, p } => {
                if n < 2 || !n.is_power_of_two() {
                    return refuse(format!("scrypt n = {n} is not a power of two above 1"));
                }
                if n > MAX_SCRYPT_N {
                    return refuse(format!("scrypt n = {n} is above the limit of 2^20"));
                }
                if r == 0 || p == 0 || p > MAX_SCRYPT_P {
                    return refuse(format!("scrypt r = {r}, p = {p} out of range"));
                }
                let memory = 128 * u64::from(r) * u64::from(n);
                if memory > MAX_SCRYPT_MEMORY {
                    return refuse(format!(
                        "scrypt n = {n}, r = {r} needs {} MiB, above the 1 GiB limit",
                        memory >> 20
                    ));
                }
                let work = u64::from(n) * u64::from(r) * u64::from(p);
                if work > MAX_SCRYPT_WORK {
                    return refuse(format!(
                        "scrypt n = {n}, r = {r}, p = {p} is {} times the standard work \
                         (n = 2^18, r = 8, p = 1); the limit is {} times",
                        work / STANDARD_SCRYPT_WORK,
                        MAX_SCRYPT_WORK / STANDARD_SCRYPT_WORK
                    ));
                }
            }
            Self::Pbkdf2 { c } => {
                if c == 0 || c > MAX_PBKDF2_C {
                    return refuse(format!(
                        "pbkdf2 c = {c} is outside 1..=2^20 (four times the EIP's 2^18)"
                    ));
                }
            }
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        self.check()?;
        let mut dk = Zeroizing::new([0u8; 32]);
        match *self {
            Self::Scrypt { n, r, p } => {
                let log_n = n.trailing_zeros() as u8;
                let params = scrypt::Params::new(log_n, r, p).map_err(|_| {
                    KeystoreError::UnsafeParams(format!("scrypt n = {n}, r = {r}, p = {p}"))
                })?;
                scrypt::scrypt(password, salt, &params, &mut dk[..])
                    .map_err(|_| KeystoreError::UnsafeParams("scrypt output length".into()))?;
            }
            Self::Pbkdf2 { c } => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, c, &mut dk[..]),
        }
        Ok(dk)
    }

    fn to_module(self, salt: &[u8]) -> Module {
        let params = match self {
            Self::Scrypt { n, r, p } => {
                json!({ "dklen": DKLEN, "n": n, "r": r, "p": p, "salt": hex::encode(salt) })
            }
            Self::Pbkdf2 { c } => {
                json!({ "dklen": DKLEN, "c": c, "prf": "hmac-sha256", "salt": hex::encode(salt) })
            }
        };
        let function = match self {
            Self::Scrypt { .. } => "scrypt",
            Self::Pbkdf2 { .. } => "pbkdf2",
        };
        Module {
            function: function.into(),
            params,
            message: String::new(),
        }
    }

    fn from_module(module: &Module) -> Result<(Self, Vec<u8>), KeystoreError> {
        let field = |name: &'static str| {
            module.params.get(name).ok_or(KeystoreError::Malformed {
                field: "crypto.kdf.params",
                reason: format!("missing {name}"),
            })
        };
        let number = |name: &'static str| -> Result<u32, KeystoreError> {
            field(name)?
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| KeystoreError::UnsafeParams(format!("{name} is not a u32")))
        };
        let kdf = match module.function.as_str() {
            "scrypt" => Self::Scrypt {
                n: number("n")?,
                r: number("r")?,
                p: number("p")?,
            },
            "pbkdf2" => {
                let prf = field("prf")?.as_str().unwrap_or_default();
                if prf != "hmac-sha256" {
                    return Err(KeystoreError::UnsupportedPrf(field("prf")?.to_string()));
                }
                Self::Pbkdf2 { c: number("c")? }
            }
            other => return Err(KeystoreError::UnsupportedKdf(other.into())),
        };
        let dklen = field("dklen")?.as_u64();
        if dklen != Some(DKLEN) {
            return Err(KeystoreError::UnsafeParams(format!(
                "dklen = {} (EIP-2335 needs 32)",
                field("dklen")?
            )));
        }
        let salt = field("salt")?.as_str().unwrap_or_default();
        let salt = decode_hex("crypto.kdf.params.salt", salt)?;
        if salt.is_empty() {
            return Err(KeystoreError::Malformed {
                field: "crypto.kdf.params.salt",
                reason: "empty".into(),
            });
        }
        kdf.check()?;
        Ok((kdf, salt))
    }
}

/// One of the three `crypto` modules. `params` stays untyped so that an unknown function
/// is reported by name instead of as a JSON shape error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Module {
    pub function: String,
    pub params: Value,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Crypto {
    pub kdf: Module,
    pub checksum: Module,
    pub cipher: Module,
}

/// An EIP-2335 keystore as it sits in a JSON file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Keystore {
    pub crypto: Crypto,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub pubkey: String,
    #[serde(default)]
    pub path: String,
    pub uuid: String,
    pub version: u64,
}

impl Keystore {
    /// Parses a keystore, checking the version first so that a v3 (execution-layer) file is
    /// reported as such rather than as a missing field.
    pub fn from_json(text: &str) -> Result<Self, KeystoreError> {
        let value: Value = serde_json::from_str(text)?;
        match value.get("version") {
            Some(v) if v.as_u64() == Some(VERSION) => {}
            Some(v) => return Err(KeystoreError::UnsupportedVersion(v.to_string())),
            None => return Err(KeystoreError::UnsupportedVersion("(missing)".into())),
        }
        Ok(serde_json::from_value(value)?)
    }

    pub fn to_json_pretty(&self) -> String {
        // Only strings, numbers and `Value`s: serialising cannot fail.
        serde_json::to_string_pretty(self).expect("keystore serialises to JSON")
    }
}

/// Encrypts `secret` with fresh randomness. Fails only if `kdf` is outside the limits
/// that [`decrypt`] enforces.
pub fn encrypt(
    secret: &[u8],
    password: &str,
    pubkey_hex: &str,
    path: &str,
    kdf: Kdf,
    rng: &mut impl CryptoRng,
) -> Result<Keystore, KeystoreError> {
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    let mut uuid = [0u8; 16];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    rng.fill_bytes(&mut uuid);
    encrypt_with(
        secret,
        password,
        pubkey_hex,
        path,
        kdf,
        &salt,
        &iv,
        &uuid_v4(uuid),
    )
}

/// [`encrypt`] with caller-chosen salt, iv and uuid, so the EIP's vectors can be reproduced.
#[allow(clippy::too_many_arguments)]
pub fn encrypt_with(
    secret: &[u8],
    password: &str,
    pubkey_hex: &str,
    path: &str,
    kdf: Kdf,
    salt: &[u8],
    iv: &[u8; 16],
    uuid: &str,
) -> Result<Keystore, KeystoreError> {
    if salt.is_empty() {
        return Err(KeystoreError::Malformed {
            field: "crypto.kdf.params.salt",
            reason: "empty".into(),
        });
    }
    let password = normalize_password(password);
    let dk = kdf.derive(password.as_bytes(), salt)?;
    let mut ciphertext = secret.to_vec();
    apply_aes_ctr(&dk, iv, &mut ciphertext);
    let checksum = checksum(&dk, &ciphertext);
    Ok(Keystore {
        crypto: Crypto {
            kdf: kdf.to_module(salt),
            checksum: Module {
                function: "sha256".into(),
                params: json!({}),
                message: hex::encode(checksum),
            },
            cipher: Module {
                function: "aes-128-ctr".into(),
                params: json!({ "iv": hex::encode(iv) }),
                message: hex::encode(&ciphertext),
            },
        },
        description: String::new(),
        pubkey: pubkey_hex.trim_start_matches("0x").to_lowercase(),
        path: path.into(),
        uuid: uuid.into(),
        version: VERSION,
    })
}

/// Recovers the secret. Every parameter is checked before the KDF runs, so a hostile
/// keystore cannot make us allocate gigabytes or spin for hours.
pub fn decrypt(keystore: &Keystore, password: &str) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    if keystore.version != VERSION {
        return Err(KeystoreError::UnsupportedVersion(
            keystore.version.to_string(),
        ));
    }
    let crypto = &keystore.crypto;
    if crypto.checksum.function != "sha256" {
        return Err(KeystoreError::UnsupportedChecksum(
            crypto.checksum.function.clone(),
        ));
    }
    if crypto.cipher.function != "aes-128-ctr" {
        return Err(KeystoreError::UnsupportedCipher(
            crypto.cipher.function.clone(),
        ));
    }
    let (kdf, salt) = Kdf::from_module(&crypto.kdf)?;
    let iv_hex = crypto.cipher.params.get("iv").and_then(Value::as_str);
    let iv = decode_hex("crypto.cipher.params.iv", iv_hex.unwrap_or_default())?;
    let iv: [u8; 16] = iv.try_into().map_err(|_| KeystoreError::Malformed {
        field: "crypto.cipher.params.iv",
        reason: "not 16 bytes".into(),
    })?;
    let expected = decode_hex("crypto.checksum.message", &crypto.checksum.message)?;
    let mut plain = Zeroizing::new(decode_hex("crypto.cipher.message", &crypto.cipher.message)?);
    if plain.is_empty() {
        return Err(KeystoreError::Malformed {
            field: "crypto.cipher.message",
            reason: "empty".into(),
        });
    }

    let password = normalize_password(password);
    let dk = kdf.derive(password.as_bytes(), &salt)?;
    if !constant_time_eq(&checksum(&dk, &plain), &expected) {
        return Err(KeystoreError::WrongPassword);
    }
    apply_aes_ctr(&dk, &iv, &mut plain);
    Ok(plain)
}

/// EIP-2335: NFKD, then drop C0, C1 and DEL, so that the same typed password opens the
/// keystore whatever keyboard, OS or terminal produced it.
///
/// The output is measured first and allocated once: NFKD can expand a character eighteenfold,
/// and a buffer that grows leaves the old copy of the password behind, unwiped.
fn normalize_password(password: &str) -> Zeroizing<String> {
    let kept = || {
        password
            .nfkd()
            .filter(|c| !matches!(*c, '\u{00}'..='\u{1f}' | '\u{7f}'..='\u{9f}'))
    };
    let len = kept().map(char::len_utf8).sum();
    let mut out = Zeroizing::new(String::with_capacity(len));
    out.extend(kept());
    out
}

fn checksum(dk: &[u8; 32], ciphertext: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(&dk[16..])
        .chain_update(ciphertext)
        .finalize()
        .into()
}

fn apply_aes_ctr(dk: &[u8; 32], iv: &[u8; 16], data: &mut [u8]) {
    let key: &[u8; 16] = dk[..16].try_into().expect("16 of 32 bytes");
    Aes128Ctr::new(key.into(), iv.into()).apply_keystream(data);
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hex(field: &'static str, text: &str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(text.trim_start_matches("0x")).map_err(|e| KeystoreError::Malformed {
        field,
        reason: e.to_string(),
    })
}

/// RFC 4122 version 4 from 16 random bytes: the only thing we need a UUID crate for.
fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use std::time::Instant;

    const PASSWORD: &str = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑";
    const SECRET: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
    const SALT: &str = "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3";
    const IV: &str = "264daa3f303d7259501c93d997d84fe6";

    // https://eips.ethereum.org/EIPS/eip-2335#test-cases
    const SCRYPT_VECTOR: &str = r#"{
        "crypto": {
            "kdf": {
                "function": "scrypt",
                "params": {
                    "dklen": 32,
                    "n": 262144,
                    "p": 1,
                    "r": 8,
                    "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
                },
                "message": ""
            },
            "checksum": {
                "function": "sha256",
                "params": {},
                "message": "d2217fe5f3e9a1e34581ef8a78f7c9928e436d36dacc5e846690a5581e8ea484"
            },
            "cipher": {
                "function": "aes-128-ctr",
                "params": {
                    "iv": "264daa3f303d7259501c93d997d84fe6"
                },
                "message": "06ae90d55fe0a6e9c5c3bc5b170827b2e5cce3929ed3f116c2811e6366dfe20f"
            }
        },
        "description": "This is a test keystore that uses scrypt to secure the secret.",
        "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
        "path": "m/12381/60/3141592653/589793238",
        "uuid": "1d85ae20-35c5-4611-98e8-aa14a633906f",
        "version": 4
    }"#;

    const PBKDF2_VECTOR: &str = r#"{
        "crypto": {
            "kdf": {
                "function": "pbkdf2",
                "params": {
                    "dklen": 32,
                    "c": 262144,
                    "prf": "hmac-sha256",
                    "salt": "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
                },
                "message": ""
            },
            "checksum": {
                "function": "sha256",
                "params": {},
                "message": "8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"
            },
            "cipher": {
                "function": "aes-128-ctr",
                "params": {
                    "iv": "264daa3f303d7259501c93d997d84fe6"
                },
                "message": "cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"
            }
        },
        "description": "This is a test keystore that uses PBKDF2 to secure the secret.",
        "pubkey": "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07",
        "path": "m/12381/60/0/0",
        "uuid": "64625def-3331-4eea-ab6f-782f3ed16a83",
        "version": 4
    }"#;

    fn check_vector(json: &str, kdf: Kdf) {
        let keystore = Keystore::from_json(json).unwrap();
        let start = Instant::now();
        let secret = decrypt(&keystore, PASSWORD).unwrap();
        eprintln!("{kdf:?} vector decrypt: {:?}", start.elapsed());
        assert_eq!(hex::encode(&*secret), SECRET);

        // Encrypting with the vector's salt and iv reproduces its ciphertext and checksum.
        let salt = hex::decode(SALT).unwrap();
        let iv: [u8; 16] = hex::decode(IV).unwrap().try_into().unwrap();
        let again = encrypt_with(
            &secret,
            PASSWORD,
            &keystore.pubkey,
            &keystore.path,
            kdf,
            &salt,
            &iv,
            &keystore.uuid,
        )
        .unwrap();
        assert_eq!(again.crypto.cipher, keystore.crypto.cipher);
        assert_eq!(again.crypto.checksum, keystore.crypto.checksum);
        assert_eq!(again.crypto.kdf, keystore.crypto.kdf);
    }

    #[test]
    fn eip_scrypt_vector() {
        check_vector(SCRYPT_VECTOR, Kdf::standard());
    }

    #[test]
    fn eip_pbkdf2_vector() {
        check_vector(PBKDF2_VECTOR, Kdf::Pbkdf2 { c: 262144 });
    }

    #[test]
    fn password_normalization() {
        // The EIP's encoded form of its test password.
        assert_eq!(
            hex::encode(normalize_password(PASSWORD).as_bytes()),
            "7465737470617373776f7264f09f9491"
        );
        assert_eq!(&*normalize_password("a\u{0}b\u{7f}c\u{85}d\te\n"), "abcde");
    }

    #[test]
    fn password_normalization_never_reallocates() {
        // U+FDFA decomposes into 18 characters (33 bytes from 3): far past any fixed guess.
        for password in ["\u{FDFA}\u{FDFA}", "plain", PASSWORD, "\u{1}"] {
            let out = normalize_password(password);
            assert_eq!(
                out.capacity(),
                out.len(),
                "{password:?}: the buffer grew, leaving a copy behind"
            );
        }
    }

    #[test]
    fn total_kdf_work_is_bounded() {
        let base = light_keystore(&[1; 32], "pw");
        // Within the memory limit (128 MiB) but 8 times the standard work: refused before the
        // KDF runs, so this test takes no time.
        let mut k = base.clone();
        k.crypto.kdf.params["n"] = json!(1u64 << 17);
        k.crypto.kdf.params["p"] = json!(16);
        let start = Instant::now();
        let err = decrypt(&k, "pw").unwrap_err();
        assert!(matches!(err, KeystoreError::UnsafeParams(_)), "{err}");
        assert!(err.to_string().contains("standard work"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // The standard cost and the EIP's PBKDF2 vector stay accepted.
        assert!(Kdf::standard().check().is_ok());
        assert!(Kdf::Pbkdf2 { c: 262144 }.check().is_ok());
        assert!(Kdf::Pbkdf2 { c: 1 << 21 }.check().is_err());
        assert!(
            Kdf::Scrypt {
                n: 1 << 20,
                r: 8,
                p: 16
            }
            .check()
            .is_err()
        );
    }

    fn light_keystore(secret: &[u8], password: &str) -> Keystore {
        let mut rng = StdRng::seed_from_u64(7);
        encrypt(secret, password, "0xAB", "m/0", Kdf::light(), &mut rng).unwrap()
    }

    #[test]
    fn round_trip_light() {
        let secret = [0x42u8; 32];
        let keystore = light_keystore(&secret, "hunter2");
        assert_eq!(keystore.pubkey, "ab");
        let parsed = Keystore::from_json(&keystore.to_json_pretty()).unwrap();
        assert_eq!(parsed, keystore);
        let start = Instant::now();
        let plain = decrypt(&parsed, "hunter2").unwrap();
        eprintln!("light decrypt: {:?}", start.elapsed());
        assert_eq!(&plain[..], &secret);

        let uuid = &keystore.uuid;
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn wrong_password_rejected() {
        let keystore = light_keystore(&[1; 32], "right");
        assert!(matches!(
            decrypt(&keystore, "wrong"),
            Err(KeystoreError::WrongPassword)
        ));
    }

    #[test]
    fn tampered_ciphertext_rejected() {
        let mut keystore = light_keystore(&[1; 32], "right");
        let mut bytes = hex::decode(&keystore.crypto.cipher.message).unwrap();
        bytes[0] ^= 1;
        keystore.crypto.cipher.message = hex::encode(bytes);
        assert!(matches!(
            decrypt(&keystore, "right"),
            Err(KeystoreError::WrongPassword)
        ));
    }

    #[test]
    fn hostile_params_refused_before_kdf() {
        let base = light_keystore(&[1; 32], "pw");
        let with = |key: &str, value: Value| {
            let mut k = base.clone();
            k.crypto.kdf.params[key] = value;
            decrypt(&k, "pw").unwrap_err().to_string()
        };
        assert!(with("n", json!(1000)).contains("power of two"));
        assert!(with("n", json!(1u64 << 22)).contains("2^20"));
        assert!(with("n", json!(1u64 << 40)).contains("not a u32"));
        assert!(with("r", json!(4096)).contains("1 GiB"));
        assert!(with("dklen", json!(64)).contains("dklen"));

        let mut k = base.clone();
        k.crypto.kdf.function = "argon2".into();
        assert!(matches!(
            decrypt(&k, "pw"),
            Err(KeystoreError::UnsupportedKdf(_))
        ));
        let mut k = base.clone();
        k.crypto.cipher.function = "aes-256-gcm".into();
        assert!(matches!(
            decrypt(&k, "pw"),
            Err(KeystoreError::UnsupportedCipher(_))
        ));

        let v3 = base
            .to_json_pretty()
            .replace("\"version\": 4", "\"version\": 3");
        assert!(matches!(
            Keystore::from_json(&v3),
            Err(KeystoreError::UnsupportedVersion(_))
        ));
        assert!(
            encrypt_with(
                b"x",
                "pw",
                "",
                "",
                Kdf::Scrypt { n: 3, r: 8, p: 1 },
                b"s",
                &[0; 16],
                "u"
            )
            .is_err()
        );
    }
}
