//! The operator's ed25519 identity: the key its p2p connections and consensus messages are
//! signed with.
//!
//! On disk it is one line, the hex of the 32-byte seed, so an operator can back it up or
//! inspect it with ordinary tools; the file is guarded by [`crate::files`].

use crate::files::{self, SecretFileError};
use commonware_codec::{Copying, DecodeExt, Encode, Write};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_math::algebra::Random;
use rand::CryptoRng;
use std::{io, path::Path, path::PathBuf};
use zeroize::Zeroizing;

const SEED_LEN: usize = 32;

/// Why an identity file could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("identity file {} is malformed: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
}

pub fn generate(rng: &mut impl CryptoRng) -> PrivateKey {
    PrivateKey::random(rng)
}

pub fn save(path: &Path, key: &PrivateKey) -> io::Result<()> {
    let mut seed = Zeroizing::new(Vec::with_capacity(SEED_LEN));
    key.write(&mut *seed);
    let mut line = Zeroizing::new(hex::encode(&*seed));
    line.push('\n');
    files::write_secret(path, line.as_bytes())
}

/// Saves `key` into a new file at `path`, refusing to replace anything already there (see
/// [`files::write_secret_new`]): an identity overwritten is an operator locked out.
pub fn save_new(path: &Path, key: &PrivateKey) -> io::Result<()> {
    let mut seed = Zeroizing::new(Vec::with_capacity(SEED_LEN));
    key.write(&mut *seed);
    let mut line = Zeroizing::new(String::with_capacity(SEED_LEN * 2 + 1));
    line.push_str(&hex::encode(&*seed));
    line.push('\n');
    files::write_secret_new(path, line.as_bytes())
}

pub fn load(path: &Path) -> Result<PrivateKey, IdentityError> {
    let malformed = |reason: &str| IdentityError::Malformed {
        path: path.into(),
        reason: reason.into(),
    };
    let bytes = files::read_secret(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not text"))?;
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != SEED_LEN * 2 {
        return Err(malformed(&format!(
            "expected {} hex characters (a 32-byte ed25519 seed), found {}",
            SEED_LEN * 2,
            text.len()
        )));
    }
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    hex::decode_to_slice(text, &mut seed[..]).map_err(|_| malformed("not hex"))?;
    PrivateKey::decode(Copying(&seed[..])).map_err(|e| malformed(&e.to_string()))
}

pub fn public_key_hex(key: &PublicKey) -> String {
    hex::encode(key.encode())
}

/// Why text is not an operator's ed25519 public key. Every variant quotes the text, since a
/// config lists several keys.
#[derive(Debug, thiserror::Error)]
pub enum PublicKeyError {
    #[error("ed25519 public key {text:?} is not hex: {source}")]
    NotHex {
        text: String,
        source: hex::FromHexError,
    },
    #[error("ed25519 public key {text:?} is {len} bytes, expected 32")]
    Length { text: String, len: usize },
    #[error("ed25519 public key {text:?} is not a valid point: {source}")]
    NotAPoint {
        text: String,
        source: commonware_codec::Error,
    },
}

/// Accepts the `0x` prefix too, since operators paste keys from explorers and configs.
pub fn parse_public_key(text: &str) -> Result<PublicKey, PublicKeyError> {
    let text = text.trim();
    let hex_part = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(hex_part).map_err(|source| PublicKeyError::NotHex {
        text: text.into(),
        source,
    })?;
    if bytes.len() != 32 {
        return Err(PublicKeyError::Length {
            text: text.into(),
            len: bytes.len(),
        });
    }
    PublicKey::decode(Copying(&bytes[..])).map_err(|source| PublicKeyError::NotAPoint {
        text: text.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::tests::TempDir;
    use commonware_cryptography::Signer;
    use rand::{SeedableRng, rngs::StdRng};
    use std::{fs, os::unix::fs::PermissionsExt};

    #[test]
    fn round_trip() {
        let dir = TempDir::new("identity");
        let path = dir.0.join("identity.key");
        let key = generate(&mut StdRng::seed_from_u64(1));
        save(&path, &key).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());

        let hex = public_key_hex(&key.public_key());
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_public_key(&hex).unwrap(), key.public_key());
        assert_eq!(
            parse_public_key(&format!("0x{hex}")).unwrap(),
            key.public_key()
        );
        let short = parse_public_key("abcd").unwrap_err();
        assert!(
            matches!(short, PublicKeyError::Length { len: 2, .. }),
            "{short}"
        );
        assert!(short.to_string().contains("2 bytes"), "{short}");
        assert!(matches!(
            parse_public_key("zz"),
            Err(PublicKeyError::NotHex { .. })
        ));
    }

    #[test]
    fn world_readable_refused() {
        let dir = TempDir::new("identity");
        let path = dir.0.join("identity.key");
        save(&path, &generate(&mut StdRng::seed_from_u64(2))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn garbage_refused() {
        let dir = TempDir::new("identity");
        let path = dir.0.join("identity.key");
        for junk in [&b"not a key\n"[..], &[b'g'; 64], &[b'a'; 62], &[0xff; 64]] {
            files::write_secret(&path, junk).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains("identity.key"), "{err}");
            assert!(err.contains("malformed"), "{err}");
        }
    }
}
