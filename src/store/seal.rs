//! Sealing secret values at rest: an AEAD key ring with key IDs and rotation.
//!
//! The durable stores never write a [`SecretValue`] in plaintext: they serialize
//! records under a [`KeyRing`] (through [`with_secret_codec`](crate::model::with_secret_codec)),
//! which seals each secret with XChaCha20-Poly1305 under its newest key.
//!
//! # Sealed text
//! `cs1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`: a format tag, the ID of
//! the key that sealed it, a random 192-bit nonce, and the ciphertext with its
//! 128-bit tag. The format tag and key ID are authenticated as associated data,
//! so a sealed value cannot be relabelled to another key.
//!
//! # Rotation
//! 1. Give every replica a ring whose newest key is the new one and which still
//!    holds the old ones ([`KeyRing::with_old_key`]). New writes seal under the
//!    new key; old values still open.
//! 2. Re-seal once (`SqliteStore::reseal` / `PostgresStore::reseal`): every
//!    stored value, including the change feed, is rewritten under the new key.
//! 3. Drop the old key from the rings.
//!
//! A value sealed under a key the ring lacks, or that its key does not open,
//! is reported as [`SealError::MissingKey`] / [`SealError::WrongKey`] naming the
//! key ID; the stores turn it into [`StoreError::Unreadable`](super::StoreError::Unreadable)
//! for that record and change nothing.
//!
//! # Key binding
//! A key ID names one key forever. The durable stores keep a *key check*
//! ([`SealKey::check_value`]) of each key ID's key from its first use, and
//! refuse to open with a ring holding other bytes under a known ID
//! ([`StoreError::KeyMismatch`](super::StoreError::KeyMismatch)): a
//! misconfigured replica is stopped before it seals anything the others could
//! not open. For a key ID the store has no check of yet, a value already
//! sealed under that ID (written before the check existed) is opened first as
//! evidence.
//!
//! ```
//! use connective::model::SecretValue;
//! use connective::store::seal::{KeyRing, SealKey};
//!
//! let old = SealKey::generate("2024-01")?;
//! let new = SealKey::generate("2025-01")?;
//! let sealed_before = KeyRing::new(old.clone()).seal(&SecretValue::new("hunter2"))?;
//!
//! let ring = KeyRing::new(new).with_old_key(old)?;
//! assert_eq!(ring.open(&sealed_before)?.expose(), "hunter2");
//! let sealed_now = ring.seal(&SecretValue::new("hunter2"))?;
//! assert_eq!(KeyRing::sealed_key_id(&sealed_now), Some("2025-01"));
//! assert!(!sealed_now.contains("hunter2"));
//! # Ok::<(), connective::store::seal::SealError>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::model::{CodecError, SecretCodec, SecretValue};

/// The format tag every sealed text starts with.
pub const FORMAT_TAG: &str = "cs1";
/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// The longest key ID.
pub const MAX_KEY_ID_LEN: usize = 64;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The format tag of a key check.
const CHECK_TAG: &str = "kc1";
/// The nonce of a key check: fixed, and never drawn for a seal in practice
/// (seals use random nonces: one in 2^192).
const CHECK_NONCE: &[u8; NONCE_LEN] = b"connective key check v1\0";

/// Why sealing or opening failed, or a key was refused. Messages name key IDs,
/// never key material or secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A key ID must be 1 to 64 of `A-Z a-z 0-9 . _ -`.
    #[error("invalid key id {id:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadKeyId {
        /// The refused ID.
        id: String,
    },
    /// A key must be exactly 32 bytes.
    #[error("key {id:?} must be 32 bytes, got {len}")]
    BadKeyLength {
        /// The key's ID.
        id: String,
        /// The length given.
        len: usize,
    },
    /// A key's text is not base64.
    #[error("key {id:?} is not valid base64")]
    BadKeyEncoding {
        /// The key's ID.
        id: String,
    },
    /// Two keys of one ring share an ID.
    #[error("key id {id:?} is in the key ring twice")]
    DuplicateKeyId {
        /// The ID.
        id: String,
    },
    /// The value was sealed under a key this ring does not hold.
    #[error("secret sealed with key {key_id:?}, which the key ring does not hold")]
    MissingKey {
        /// The ID of the key that sealed it.
        key_id: String,
    },
    /// The ring's key of that ID does not open the value: a different key under
    /// the same ID, or the sealed text was altered.
    #[error("key {key_id:?} does not open this secret (a different key under that id, or altered data)")]
    WrongKey {
        /// The key's ID.
        key_id: String,
    },
    /// The text is not a sealed value of a known format.
    #[error("not a sealed secret: {reason}")]
    Malformed {
        /// What is wrong with it (never its content).
        reason: &'static str,
    },
    /// The operating system's random generator failed; nothing was sealed.
    #[error("the operating system's random generator failed")]
    Random,
}

impl SealError {
    /// The key ID the error is about, if any.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            SealError::BadKeyId { id }
            | SealError::BadKeyLength { id, .. }
            | SealError::BadKeyEncoding { id }
            | SealError::DuplicateKeyId { id } => Some(id),
            SealError::MissingKey { key_id } | SealError::WrongKey { key_id } => Some(key_id),
            SealError::Malformed { .. } | SealError::Random => None,
        }
    }
}

fn check_key_id(id: &str) -> Result<(), SealError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SealError::BadKeyId {
            id: id.chars().take(MAX_KEY_ID_LEN).collect(),
        })
    }
}

/// One 256-bit sealing key with its ID. The key bytes live in a
/// [`secrecy::SecretBox`], and the cipher made from them once in a box of its
/// own (both zeroized on drop); `Debug` shows the ID only.
pub struct SealKey {
    id: String,
    key: SecretBox<[u8; KEY_LEN]>,
    /// Boxed so that moving the key copies no key material.
    cipher: Box<XChaCha20Poly1305>,
}

impl SealKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(id: impl Into<String>, bytes: &[u8]) -> Result<Self, SealError> {
        let id = id.into();
        check_key_id(&id)?;
        if bytes.len() != KEY_LEN {
            return Err(SealError::BadKeyLength { id, len: bytes.len() });
        }
        let key = SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| k.copy_from_slice(bytes));
        Ok(SealKey::assemble(id, key))
    }

    /// A key from base64 text (standard or URL-safe alphabet, padded or not),
    /// as [`SealKey::to_base64`] writes it.
    pub fn from_base64(id: impl Into<String>, text: &str) -> Result<Self, SealError> {
        let id = id.into();
        check_key_id(&id)?;
        // The text is the key: keep every copy of it in zeroizing wrappers.
        let normalized = SecretString::from(
            text.trim()
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect::<String>(),
        );
        let bytes = secrecy::SecretSlice::from(
            URL_SAFE_NO_PAD
                .decode(normalized.expose_secret().as_bytes())
                .map_err(|_| SealError::BadKeyEncoding { id: id.clone() })?,
        );
        Self::from_bytes(id, bytes.expose_secret())
    }

    /// A new random key from the operating system's generator.
    pub fn generate(id: impl Into<String>) -> Result<Self, SealError> {
        let id = id.into();
        check_key_id(&id)?;
        let mut failed = false;
        let key = SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            failed = crate::model::random::try_fill(k).is_err();
        });
        if failed {
            return Err(SealError::Random);
        }
        Ok(SealKey::assemble(id, key))
    }

    /// The key's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as URL-safe base64 without padding, to keep it somewhere safe.
    /// An explicit exposure: the result is itself a secret.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(URL_SAFE_NO_PAD.encode(self.key.expose_secret()))
    }

    /// The key's check value, `kc1:<base64url>`: the authentication tag of
    /// sealing nothing under a fixed nonce with the key's ID as associated
    /// data, i.e. a MAC of a fixed label under the key. The same key always
    /// gives the same value, another key another one; it reveals nothing
    /// about the key. The durable stores keep it per key ID.
    ///
    /// ```
    /// use connective::store::seal::SealKey;
    /// let a = SealKey::from_bytes("k1", &[1; 32])?;
    /// let b = SealKey::from_bytes("k1", &[2; 32])?;
    /// assert_eq!(a.check_value()?, a.clone().check_value()?);
    /// assert_ne!(a.check_value()?, b.check_value()?);
    /// assert!(a.check_value()?.starts_with("kc1:"));
    /// # Ok::<(), connective::store::seal::SealError>(())
    /// ```
    pub fn check_value(&self) -> Result<String, SealError> {
        let label = format!("{CHECK_TAG}:{}", self.id);
        let tag = self
            .cipher
            .encrypt(
                &XNonce::from(*CHECK_NONCE),
                Payload {
                    msg: &[],
                    aad: label.as_bytes(),
                },
            )
            .map_err(|_| SealError::Malformed {
                reason: "the key check could not be computed",
            })?;
        Ok(format!("{CHECK_TAG}:{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    fn assemble(id: String, key: SecretBox<[u8; KEY_LEN]>) -> Self {
        let cipher = Box::new(XChaCha20Poly1305::new(<&Key>::from(key.expose_secret())));
        SealKey { id, key, cipher }
    }
}

impl Clone for SealKey {
    fn clone(&self) -> Self {
        let bytes = self.key.expose_secret();
        SealKey::assemble(
            self.id.clone(),
            SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| k.copy_from_slice(bytes)),
        )
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// Several [`SealKey`]s: the newest seals, any of them opens.
///
/// Implements [`SecretCodec`], so a store can serialize records under it.
#[derive(Clone)]
pub struct KeyRing {
    /// `keys[0]` is the newest, sealing key.
    keys: Vec<SealKey>,
}

impl KeyRing {
    /// A ring whose newest (sealing) key is `newest`.
    pub fn new(newest: SealKey) -> Self {
        KeyRing { keys: vec![newest] }
    }

    /// Adds an older key that only opens values (for rotation).
    pub fn with_old_key(mut self, key: SealKey) -> Result<Self, SealError> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(SealError::DuplicateKeyId { id: key.id });
        }
        self.keys.push(key);
        Ok(self)
    }

    /// The ID of the key that seals.
    pub fn newest_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The IDs of every key, newest first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Every key, newest first.
    pub fn keys(&self) -> impl Iterator<Item = &SealKey> {
        self.keys.iter()
    }

    /// The ID of the key that sealed `sealed`, read from its label (without
    /// opening it), or `None` if it is not sealed text of a known format.
    pub fn sealed_key_id(sealed: &str) -> Option<&str> {
        match parts(sealed) {
            Some((FORMAT_TAG, id, _)) if check_key_id(id).is_ok() => Some(id),
            _ => None,
        }
    }

    /// Seals `secret` under the newest key.
    pub fn seal(&self, secret: &SecretValue) -> Result<String, SealError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        crate::model::random::try_fill(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = format!("{FORMAT_TAG}:{}", key.id);
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // Only fails for inputs far beyond any parameter's size limit.
            .map_err(|_| SealError::Malformed {
                reason: "the value is too long to seal",
            })?;
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        Ok(format!("{aad}:{}", URL_SAFE_NO_PAD.encode(&body)))
    }

    /// Opens text made by [`KeyRing::seal`] under any key of the ring.
    pub fn open(&self, sealed: &str) -> Result<SecretValue, SealError> {
        let Some((tag, key_id, body)) = parts(sealed) else {
            return Err(SealError::Malformed {
                reason: "expected format:key-id:data",
            });
        };
        if tag != FORMAT_TAG {
            return Err(SealError::Malformed {
                reason: "unknown format tag",
            });
        }
        if check_key_id(key_id).is_err() {
            return Err(SealError::Malformed {
                reason: "invalid key id",
            });
        }
        let Some(key) = self.keys.iter().find(|k| k.id == key_id) else {
            return Err(SealError::MissingKey {
                key_id: key_id.to_owned(),
            });
        };
        // Decoded into a buffer on the stack (on the heap beyond
        // `OPEN_INLINE` bytes), decrypted in place there, and the plaintext
        // copied once into the value: no ciphertext or plaintext copies in
        // between. The buffer is zeroized whatever happens.
        let mut inline = [0u8; OPEN_INLINE];
        let mut heap = Vec::new();
        let buffer: &mut [u8] = match body.len().div_ceil(4) * 3 {
            n if n <= OPEN_INLINE => &mut inline[..n],
            n => {
                heap.resize(n, 0);
                &mut heap
            }
        };
        let buffer = Wiped(buffer);
        let len = URL_SAFE_NO_PAD
            .decode_slice(body, &mut buffer.0[..])
            .map_err(|_| SealError::Malformed {
                reason: "data is not base64",
            })?;
        if len < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed {
                reason: "data is too short",
            });
        }
        let (nonce, rest) = buffer.0[..len].split_at_mut(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at_mut(len - NONCE_LEN - TAG_LEN);
        let (Ok(nonce), Ok(tag)) = (
            <&[u8; NONCE_LEN]>::try_from(&*nonce),
            <&[u8; TAG_LEN]>::try_from(&*tag),
        ) else {
            return Err(SealError::Malformed {
                reason: "data is too short",
            });
        };
        // The associated data is the text's own label, `cs1:<key id>`.
        let aad = &sealed[..FORMAT_TAG.len() + 1 + key_id.len()];
        open_in_place(key.key.expose_secret(), nonce, aad.as_bytes(), ciphertext, tag).map_err(|()| {
            SealError::WrongKey {
                key_id: key_id.to_owned(),
            }
        })?;
        match std::str::from_utf8(ciphertext) {
            Ok(text) => Ok(SecretValue::copied_from(text)),
            Err(_) => Err(SealError::Malformed {
                reason: "the opened value is not UTF-8",
            }),
        }
    }
}

/// A sealed text's three parts, `<format>:<key id>:<data>`, split at its
/// first two colons (the data may hold more); `None` without two.
fn parts(sealed: &str) -> Option<(&str, &str, &str)> {
    let colon = |text: &str| text.bytes().position(|b| b == b':');
    let first = colon(sealed)?;
    let rest = &sealed[first + 1..];
    let second = colon(rest)?;
    Some((&sealed[..first], &rest[..second], &rest[second + 1..]))
}

/// Opens XChaCha20-Poly1305 `ciphertext` in place: the same construction
/// as [`XChaCha20Poly1305`] (draft-irtf-cfrg-xchacha): an HChaCha20 subkey
/// of `key` and the nonce's first 16 bytes, then IETF ChaCha20-Poly1305
/// under it with the nonce's last 8 bytes after four zero bytes. That last
/// step is ring's, which encrypts and authenticates in one pass: for a
/// value of a few dozen bytes it costs a fraction of the separate ChaCha20
/// and Poly1305 set-ups. The subkey opens this one value only; it is
/// zeroized here (ring keeps its copy on the stack, like the plaintext's
/// buffer before it is wiped).
fn open_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), ()> {
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let (prefix, last) = nonce.split_at(16);
    let prefix = chacha20::cipher::array::Array::from(<[u8; 16]>::try_from(prefix).map_err(|_| ())?);
    let mut subkey = chacha20::hchacha::<chacha20::R20>(key.into(), &prefix);
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey);
    secrecy::zeroize::Zeroize::zeroize(subkey.as_mut_slice());
    let subkey = LessSafeKey::new(unbound.map_err(|_| ())?);
    let mut ietf = [0u8; 12];
    ietf[4..].copy_from_slice(last);
    subkey
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(ietf),
            Aad::from(aad),
            ring::aead::Tag::from(*tag),
            ciphertext,
            0..,
        )
        .map(|_| ())
        .map_err(|_| ())
}

/// Sealed values up to this many bytes (a secret of about 200 bytes) are
/// opened in a buffer on the stack.
const OPEN_INLINE: usize = 256;

/// A buffer that held a secret, zeroized when dropped.
struct Wiped<'a>(&'a mut [u8]);

impl Drop for Wiped<'_> {
    fn drop(&mut self) {
        secrecy::zeroize::Zeroize::zeroize(&mut *self.0);
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretCodec for KeyRing {
    fn seal(&self, secret: &SecretValue) -> Result<String, CodecError> {
        KeyRing::seal(self, secret).map_err(CodecError::new)
    }
    fn open(&self, sealed: &str) -> Result<SecretValue, CodecError> {
        KeyRing::open(self, sealed).map_err(CodecError::new)
    }
}

/// What a re-seal rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resealed {
    /// Live records rewritten.
    pub records: usize,
    /// Change-feed entries rewritten.
    pub changes: usize,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Binds each key of `ring` to its ID in a store (see "Key binding" in
/// the [module documentation](self)): a stored check value must match
/// the key's; without one, up to three values sealed under the ID
/// (`sealed_bodies` finds rows whose text contains the needle it is
/// given) must not all refuse the key, and then the key's check is
/// stored (`insert` must keep a check stored concurrently) and read back.
pub(crate) fn bind_keys<E: From<crate::store::StoreError>>(
    backend: &'static str,
    ring: &KeyRing,
    mut stored_check: impl FnMut(&str) -> Result<Option<String>, E>,
    mut sealed_bodies: impl FnMut(&str) -> Result<Vec<String>, E>,
    mut insert: impl FnMut(&str, &str) -> Result<(), E>,
) -> Result<(), E> {
    use crate::store::StoreError;
    let mismatch = |id: &str| StoreError::KeyMismatch {
        backend,
        key_id: id.to_owned(),
    };
    for key in ring.keys() {
        let check = key.check_value().map_err(|e| StoreError::Unavailable {
            backend,
            message: format!("cannot check key {:?}: {e}", key.id()),
        })?;
        match stored_check(key.id())? {
            Some(stored) if stored == check => continue,
            Some(_) => return Err(mismatch(key.id()).into()),
            None => {}
        }
        // A JSON string holding a value sealed under this key's ID.
        let needle = format!("\"{}:{}:", FORMAT_TAG, key.id());
        let alone = KeyRing::new(key.clone());
        let bodies = sealed_bodies(&needle)?;
        let samples: Vec<&str> = bodies
            .iter()
            .filter_map(|body| {
                let start = body.find(&needle)? + 1;
                let len = body[start..].find('"')?;
                Some(&body[start..start + len])
            })
            .collect();
        if !samples.is_empty()
            && samples
                .iter()
                .all(|sealed| matches!(alone.open(sealed), Err(SealError::WrongKey { .. })))
        {
            return Err(mismatch(key.id()).into());
        }
        insert(key.id(), &check)?;
        if stored_check(key.id())?.as_deref() != Some(check.as_str()) {
            return Err(mismatch(key.id()).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> SealKey {
        SealKey::from_bytes(id, &[byte; KEY_LEN]).expect("valid key")
    }

    /// A key's check value depends on its bytes and its ID, and is stable.
    #[test]
    fn key_checks_tell_keys_apart() {
        let a = key("k1", 1).check_value().expect("check");
        assert_eq!(a, key("k1", 1).check_value().expect("check"));
        assert_ne!(a, key("k1", 2).check_value().expect("check"));
        assert_ne!(a, key("k2", 1).check_value().expect("check"));
        // Stored by the durable stores: the same forever.
        assert_eq!(a, "kc1:9N41Xhr9uMjv8FerpiMMxg");
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let ring = KeyRing::new(key("k1", 7));
        let a = ring.seal(&SecretValue::new("s3cr3t")).expect("seal");
        let b = ring.seal(&SecretValue::new("s3cr3t")).expect("seal");
        assert_ne!(a, b, "every seal uses a fresh nonce");
        assert!(a.starts_with("cs1:k1:"));
        assert!(!a.contains("s3cr3t"));
        assert_eq!(ring.open(&a).expect("open").expose(), "s3cr3t");
        assert_eq!(
            ring.open(&ring.seal(&SecretValue::new("")).expect("seal"))
                .expect("open")
                .expose(),
            ""
        );
    }

    /// Values on either side of the stack buffer's size open in place to
    /// what was sealed; an opened value that is not UTF-8 is refused.
    #[test]
    fn values_of_any_length_open_in_place() {
        let ring = KeyRing::new(key("k1", 7));
        let sizes = [
            0,
            1,
            150,
            160,
            OPEN_INLINE - NONCE_LEN - TAG_LEN,
            OPEN_INLINE,
            4_000,
        ];
        for len in sizes.into_iter().flat_map(|n| [n, n + 1]) {
            let text: String = "sécret-".chars().cycle().take(len).collect();
            let sealed = ring.seal(&SecretValue::new(text.clone())).expect("seal");
            assert_eq!(
                ring.open(&sealed).expect("open").expose(),
                text,
                "{len} characters"
            );
        }
        let k = key("k1", 7);
        let nonce = [3u8; NONCE_LEN];
        let mut body = nonce.to_vec();
        let label = format!("{FORMAT_TAG}:k1");
        body.extend(
            k.cipher
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &[0xff, 0xfe],
                        aad: label.as_bytes(),
                    },
                )
                .expect("encrypt"),
        );
        let sealed = format!("{label}:{}", URL_SAFE_NO_PAD.encode(&body));
        assert_eq!(
            ring.open(&sealed).unwrap_err(),
            SealError::Malformed {
                reason: "the opened value is not UTF-8"
            }
        );
    }

    /// Values sealed before opening moved to ring (by the benches' cold-start
    /// database, key `bench` of 32 sevens) still open to what was sealed.
    #[test]
    fn values_sealed_before_still_open() {
        let ring = KeyRing::new(key("bench", 7));
        for (sealed, value) in [
            (
                "cs1:bench:tTanjHASEjodWLWN1Ii1_m2X6DOmuo0B_f6sJ3po9JeUMVpl7v5PbEG-umMCoKo",
                "k000000",
            ),
            (
                "cs1:bench:JHpm-3nS57XVQknoCk26jTZRxNNoylIxNVTy2ipJ9HOi9eHIwO--vinBr6oQi2Y",
                "p000000",
            ),
        ] {
            assert_eq!(ring.open(sealed).expect("open").expose(), value);
        }
    }

    proptest::proptest! {
        /// A sealed text splits into its parts where `splitn(3, ':')` does.
        #[test]
        fn sealed_texts_split_at_their_first_two_colons(text in "[a-z:é1]{0,12}") {
            let mut split = text.splitn(3, ':');
            let expected = match (split.next(), split.next(), split.next()) {
                (Some(a), Some(b), Some(c)) => Some((a, b, c)),
                _ => None,
            };
            proptest::prop_assert_eq!(parts(&text), expected);
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The XChaCha20-Poly1305 test vector of draft-irtf-cfrg-xchacha-03
    /// (A.3.1) opens, and not once a byte of it changes.
    #[test]
    fn opening_passes_the_xchacha_draft_vector() {
        let key: [u8; KEY_LEN] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .expect("key");
        let nonce: [u8; NONCE_LEN] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .expect("nonce");
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let ciphertext = hex(concat!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb",
            "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452",
            "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
            "21f9664c97637da9768812f615c68b13b52e",
        ));
        let tag: [u8; TAG_LEN] = hex("c0875924c1c7987947deafd8780acf49").try_into().expect("tag");
        let plaintext: &[u8] = b"Ladies and Gentlemen of the class of '99: \
            If I could offer you only one tip for the future, sunscreen would be it.";
        let mut buffer = ciphertext.clone();
        open_in_place(&key, &nonce, &aad, &mut buffer, &tag).expect("the vector opens");
        assert_eq!(buffer, plaintext);
        let mut bad_aad = aad.clone();
        bad_aad[0] ^= 1;
        let mut bad_nonce = nonce;
        bad_nonce[0] ^= 1;
        let mut bad_tag = tag;
        bad_tag[15] ^= 0x80;
        for (key, nonce, aad, tag) in [
            (&key, &bad_nonce, &aad, &tag),
            (&key, &nonce, &bad_aad, &tag),
            (&key, &nonce, &aad, &bad_tag),
        ] {
            let mut buffer = ciphertext.clone();
            assert_eq!(open_in_place(key, nonce, aad, &mut buffer, tag), Err(()));
        }
    }

    proptest::proptest! {
        /// Whatever the sealing cipher seals (any key, nonce, label and
        /// value), opening gives back; one flipped bit of the ciphertext,
        /// tag, label or nonce, or another key, is refused.
        #[test]
        fn opening_agrees_with_the_sealing_cipher(
            key_bytes in proptest::array::uniform32(proptest::num::u8::ANY),
            nonce in proptest::collection::vec(proptest::num::u8::ANY, NONCE_LEN),
            aad in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            flip in proptest::num::usize::ANY,
        ) {
            let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("nonce");
            let sealed = XChaCha20Poly1305::new(<&Key>::from(&key_bytes))
                .encrypt(&XNonce::from(nonce), Payload { msg: &value, aad: &aad })
                .expect("encrypt");
            let (ciphertext, tag) = sealed.split_at(value.len());
            let tag: [u8; TAG_LEN] = tag.try_into().expect("tag");
            let mut buffer = ciphertext.to_vec();
            proptest::prop_assert_eq!(open_in_place(&key_bytes, &nonce, &aad, &mut buffer, &tag), Ok(()));
            proptest::prop_assert_eq!(&buffer, &value);
            let mut other = key_bytes;
            other[flip % KEY_LEN] ^= 1 << (flip % 8);
            let mut buffer = ciphertext.to_vec();
            proptest::prop_assert_eq!(open_in_place(&other, &nonce, &aad, &mut buffer, &tag), Err(()));

            let bit = flip % ((sealed.len() + aad.len() + NONCE_LEN) * 8);
            let (mut sealed, mut aad, mut nonce) = (sealed.clone(), aad, nonce);
            let byte = bit / 8;
            if byte < sealed.len() {
                sealed[byte] ^= 1 << (bit % 8);
            } else if byte < sealed.len() + aad.len() {
                aad[byte - sealed.len()] ^= 1 << (bit % 8);
            } else {
                nonce[byte - sealed.len() - aad.len()] ^= 1 << (bit % 8);
            }
            let (ciphertext, tag) = sealed.split_at(value.len());
            let tag: [u8; TAG_LEN] = tag.try_into().expect("tag");
            let mut buffer = ciphertext.to_vec();
            proptest::prop_assert_eq!(open_in_place(&key_bytes, &nonce, &aad, &mut buffer, &tag), Err(()));
        }
    }

    #[test]
    fn newest_seals_any_opens() {
        let old = KeyRing::new(key("old", 1));
        let sealed_old = old.seal(&SecretValue::new("v")).expect("seal");
        let ring = KeyRing::new(key("new", 2))
            .with_old_key(key("old", 1))
            .expect("ring");
        assert_eq!(ring.open(&sealed_old).expect("open").expose(), "v");
        let sealed_new = ring.seal(&SecretValue::new("v")).expect("seal");
        assert_eq!(KeyRing::sealed_key_id(&sealed_new), Some("new"));
        assert_eq!(
            old.open(&sealed_new).unwrap_err(),
            SealError::MissingKey { key_id: "new".into() }
        );
    }

    #[test]
    fn wrong_key_and_tampering_are_typed() {
        let sealed = KeyRing::new(key("k", 1))
            .seal(&SecretValue::new("v"))
            .expect("seal");
        let other = KeyRing::new(key("k", 2));
        assert_eq!(
            other.open(&sealed).unwrap_err(),
            SealError::WrongKey { key_id: "k".into() }
        );
        // Relabelling to another key of the ring fails: the label is authenticated.
        let ring = KeyRing::new(key("k", 1)).with_old_key(key("j", 1)).expect("ring");
        let relabelled = sealed.replacen("cs1:k:", "cs1:j:", 1);
        assert_eq!(
            ring.open(&relabelled).unwrap_err(),
            SealError::WrongKey { key_id: "j".into() }
        );
        let mut flipped = sealed.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert!(matches!(
            ring.open(&flipped),
            Err(SealError::WrongKey { .. } | SealError::Malformed { .. })
        ));
        assert!(matches!(ring.open("plaintext"), Err(SealError::Malformed { .. })));
        assert!(matches!(
            ring.open("cs1:k:AAAA"),
            Err(SealError::Malformed { .. })
        ));
    }

    #[test]
    fn keys_are_validated_and_redacted() {
        assert!(matches!(
            SealKey::from_bytes("bad id", &[0; 32]),
            Err(SealError::BadKeyId { .. })
        ));
        assert!(matches!(
            SealKey::from_bytes("", &[0; 32]),
            Err(SealError::BadKeyId { .. })
        ));
        assert!(matches!(
            SealKey::from_bytes("k", &[0; 31]),
            Err(SealError::BadKeyLength { len: 31, .. })
        ));
        assert!(matches!(
            SealKey::from_base64("k", "not base64!"),
            Err(SealError::BadKeyEncoding { .. })
        ));
        let k = SealKey::generate("gen").expect("key");
        let text = k.to_base64();
        let back = SealKey::from_base64("gen", text.expose_secret()).expect("parse");
        let sealed = KeyRing::new(k).seal(&SecretValue::new("x")).expect("seal");
        assert_eq!(
            KeyRing::new(back.clone()).open(&sealed).expect("open").expose(),
            "x"
        );
        let debug = format!("{back:?} {:?}", KeyRing::new(back.clone()));
        assert!(!debug.contains(text.expose_secret()), "{debug}");
        assert!(debug.contains("gen"));
        let dup = KeyRing::new(back.clone()).with_old_key(back);
        assert!(matches!(dup, Err(SealError::DuplicateKeyId { .. })));
    }
}
