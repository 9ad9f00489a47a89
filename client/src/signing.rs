//! Signed messages: HMAC-SHA256 over the encoded message, with named keys for rotation.
//!
//! A signed payload is a MessagePack array `["sig1", KEY_ID, MAC (32 bytes), MESSAGE]`, where
//! MESSAGE is the encoded message (a map, so the two never look alike). Producers sign with
//! the first key; readers accept a MAC made by any key they hold, so a new key is rolled out
//! by first giving it to every reader (second place), then to producers (first place), then
//! removing the old one.
//!
//! Keys are given as `ID:SECRET[,ID:SECRET...]` in `STEVEDORE_SIGNING_KEYS`, or in a file
//! named by `STEVEDORE_SIGNING_KEYS_FILE` (one `ID:SECRET` per line).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Error, Result};

const ENVELOPE_TAG: &str = "sig1";
const MIN_SECRET_LEN: usize = 16;

/// The keys a process signs with (the first) and accepts (all).
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SigningKeys").field("ids", &ids).finish()
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The payload carries no signature.
    #[error("message is not signed, and this worker requires signed messages")]
    Unsigned,
    /// The signature names a key this process does not hold.
    #[error("message is signed with unknown key `{0}`")]
    UnknownKey(String),
    /// The MAC does not match: the message was changed, or signed with another secret.
    #[error(
        "message signature does not match (tampered, or signed with another secret for key `{0}`)"
    )]
    Mismatch(String),
    /// The envelope is not well formed.
    #[error("signed envelope is malformed: {0}")]
    Malformed(String),
}

impl SigningKeys {
    /// Parses `ID:SECRET[,ID:SECRET...]` (commas or new lines between keys).
    pub fn parse(spec: &str) -> Result<Self> {
        let keys = spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|key| {
                let (id, secret) = key.split_once(':').ok_or_else(|| {
                    invalid("each signing key is ID:SECRET (the ID names it for rotation)")
                })?;
                if id.is_empty() || secret.len() < MIN_SECRET_LEN {
                    return Err(invalid(
                        "a signing key needs a non-empty ID and a secret of at least 16 characters",
                    ));
                }
                Ok((id.to_owned(), secret.as_bytes().to_vec()))
            })
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(invalid("no signing key given"));
        }
        Ok(Self { keys })
    }

    /// The keys from `STEVEDORE_SIGNING_KEYS` or the file `STEVEDORE_SIGNING_KEYS_FILE`;
    /// `None` when neither is set.
    pub fn from_env() -> Result<Option<Self>> {
        if let Some(spec) = std::env::var("STEVEDORE_SIGNING_KEYS")
            .ok()
            .filter(|s| !s.is_empty())
        {
            return Self::parse(&spec).map(Some);
        }
        match std::env::var("STEVEDORE_SIGNING_KEYS_FILE") {
            Ok(path) if !path.is_empty() => {
                let spec = std::fs::read_to_string(&path).map_err(|e| {
                    Error::InvalidConfig(format!("cannot read signing keys file {path}: {e}"))
                })?;
                Self::parse(&spec).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The id of the key new messages are signed with.
    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Wraps `message` (an encoded message) in a signed envelope.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let (id, secret) = &self.keys[0];
        let envelope = rmpv::Value::Array(vec![
            ENVELOPE_TAG.into(),
            id.as_str().into(),
            rmpv::Value::Binary(mac(secret, id, message)),
            rmpv::Value::Binary(message.to_vec()),
        ]);
        let mut out = Vec::with_capacity(message.len() + id.len() + 48);
        rmpv::encode::write_value(&mut out, &envelope).expect("writing to a Vec cannot fail");
        out
    }

    /// The message inside `payload` if its signature is good.
    pub fn verify(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        let Some((id, tag, message)) = open_envelope(payload)? else {
            return Err(SignatureError::Unsigned);
        };
        let (_, secret) = self
            .keys
            .iter()
            .find(|(known, _)| *known == id)
            .ok_or_else(|| SignatureError::UnknownKey(id.clone()))?;
        let mut check = new_mac(secret, &id);
        check.update(&message);
        check
            .verify_slice(&tag)
            .map_err(|_| SignatureError::Mismatch(id.clone()))?;
        Ok(message)
    }
}

/// The message inside `payload` without checking any signature: for readers that hold no key
/// (they accept signed and unsigned messages alike) and for showing dead letters.
pub fn unwrap_unchecked(payload: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
    Ok(match open_envelope(payload)? {
        Some((_, _, message)) => message,
        None => payload.to_vec(),
    })
}

type Opened = Option<(String, Vec<u8>, Vec<u8>)>;

/// `(key id, mac, message)` of a signed envelope; `None` when `payload` is not one.
fn open_envelope(payload: &[u8]) -> std::result::Result<Opened, SignatureError> {
    // A fixarray of four; a message is a map and never starts with this byte.
    if payload.first() != Some(&0x94) {
        return Ok(None);
    }
    let malformed = |what: &str| SignatureError::Malformed(what.to_owned());
    let value = rmpv::decode::read_value(&mut &payload[..])
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let rmpv::Value::Array(mut parts) = value else {
        return Err(malformed("not an array"));
    };
    let message = match parts.pop() {
        Some(rmpv::Value::Binary(message)) => message,
        _ => return Err(malformed("no message")),
    };
    let tag = match parts.pop() {
        Some(rmpv::Value::Binary(tag)) => tag,
        _ => return Err(malformed("no MAC")),
    };
    let id = match parts.pop() {
        Some(rmpv::Value::String(id)) => id.into_str().ok_or_else(|| malformed("key id"))?,
        _ => return Err(malformed("no key id")),
    };
    match parts.pop() {
        Some(rmpv::Value::String(t)) if t.as_str() == Some(ENVELOPE_TAG) => {}
        _ => return Err(malformed("unknown envelope version")),
    }
    Ok(Some((id, tag, message)))
}

/// The MAC covers the key id too, so a message cannot be re-labelled with another key.
fn new_mac(secret: &[u8], id: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b"\0");
    mac
}

fn mac(secret: &[u8], id: &str, message: &[u8]) -> Vec<u8> {
    let mut mac = new_mac(secret, id);
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn invalid(reason: &str) -> Error {
    Error::InvalidConfig(format!("STEVEDORE_SIGNING_KEYS: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &str) -> SigningKeys {
        SigningKeys::parse(spec).unwrap()
    }

    #[test]
    fn a_signed_message_verifies_and_a_changed_one_does_not() {
        let keys = keys("k1:0123456789abcdef");
        let signed = keys.sign(b"\x81\xa1a\x01");
        assert_eq!(keys.verify(&signed).unwrap(), b"\x81\xa1a\x01");
        let mut tampered = signed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            keys.verify(&tampered),
            Err(SignatureError::Mismatch("k1".into()))
        );
        assert_eq!(keys.verify(b"\x81\xa1a\x01"), Err(SignatureError::Unsigned));
    }

    #[test]
    fn rotation_accepts_old_and_new_keys_and_signs_with_the_first() {
        let old = keys("old:0123456789abcdef");
        let both = keys("new:fedcba9876543210,old:0123456789abcdef");
        assert_eq!(both.signing_key_id(), "new");
        assert!(both.verify(&old.sign(b"\x80")).is_ok());
        assert_eq!(
            old.verify(&both.sign(b"\x80")),
            Err(SignatureError::UnknownKey("new".into()))
        );
    }

    #[test]
    fn a_wrong_secret_under_a_known_id_is_a_mismatch() {
        let forged = keys("k1:not-the-real-secret!").sign(b"\x80");
        assert_eq!(
            keys("k1:0123456789abcdef").verify(&forged),
            Err(SignatureError::Mismatch("k1".into()))
        );
    }

    #[test]
    fn bad_key_specs_are_refused() {
        assert!(SigningKeys::parse("").is_err());
        assert!(SigningKeys::parse("nocolon").is_err());
        assert!(SigningKeys::parse("k:short").is_err());
        assert!(format!("{:?}", keys("k1:0123456789abcdef")).contains("k1"));
        assert!(!format!("{:?}", keys("k1:0123456789abcdef")).contains("0123"));
    }
}
