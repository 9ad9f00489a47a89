//! Signed messages: HMAC-SHA256 over the encoded message, with named keys for rotation.
//!
//! A signed payload is a MessagePack array `["sig1", KEY_ID, MAC (32 bytes), MESSAGE]`, where
//! MESSAGE is the encoded message (a map, so the two never look alike). Producers sign with
//! the first key; readers accept a MAC made by any key they hold, so a new key is rolled out
//! by first giving it to every reader (second place), then to producers (first place), then
//! removing the old one.
//!
//! Schedules, control requests, cancel records and pauses are signed the same way, each with
//! its [`Purpose`] inside the MAC, so that a MAC made for one kind never verifies as another
//! (a signed schedule cannot be replayed as a task message).
//!
//! Keys are given as `ID:SECRET[,ID:SECRET...]` in `STEVEDORE_SIGNING_KEYS`, or in a file
//! named by `STEVEDORE_SIGNING_KEYS_FILE` (one `ID:SECRET` per line).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Error, Result};

const ENVELOPE_TAG: &str = "sig1";
const MIN_SECRET_LEN: usize = 16;
/// The first byte of an envelope: a MessagePack fixarray of four.
const ENVELOPE_BYTE: u8 = 0x94;

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

/// What a signed payload is. The purpose is part of the MAC: what was signed as one kind
/// never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A task message (on a stream, in the delayed set, in a dead letter).
    Message,
    /// A schedule in the schedule hash.
    Schedule,
    /// A control request on the control stream.
    Control,
    /// A cancel record.
    Cancel,
    /// A paused queue's entry.
    Pause,
    /// A workflow step's message, stored with its workflow until the step is ready.
    WorkflowStep,
}

impl Purpose {
    /// What the MAC covers besides the key id and the payload: nothing for messages (the
    /// format that signed messages always had), a name and a NUL for the others. A message is
    /// a MessagePack map and never starts with a letter, so the two cannot be confused.
    fn label(self) -> &'static [u8] {
        match self {
            Self::Message => b"",
            Self::Schedule => b"schedule\0",
            Self::Control => b"control\0",
            Self::Cancel => b"cancel\0",
            Self::Pause => b"pause\0",
            Self::WorkflowStep => b"workflow-step\0",
        }
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Message => "message",
            Self::Schedule => "schedule",
            Self::Control => "control request",
            Self::Cancel => "cancel record",
            Self::Pause => "pause",
            Self::WorkflowStep => "workflow step",
        })
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The payload carries no signature.
    #[error("{0} is not signed, and signing keys are set here (write it from a process that holds STEVEDORE_SIGNING_KEYS)")]
    Unsigned(Purpose),
    /// The signature names a key this process does not hold.
    #[error("{0} is signed with unknown key `{1}`")]
    UnknownKey(Purpose, String),
    /// The MAC does not match: the payload was changed, or signed with another secret.
    #[error(
        "{0} signature does not match (tampered, or signed with another secret for key `{1}`)"
    )]
    Mismatch(Purpose, String),
    /// The envelope is not well formed.
    #[error("signed envelope is malformed: {0}")]
    Malformed(String),
    /// A signed payload was to be changed and written again by a process without keys, which
    /// would write it unsigned.
    #[error("{0} is signed, and this process has no signing key to sign it again: run this where STEVEDORE_SIGNING_KEYS is set")]
    NoKeyToSign(Purpose),
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
        self.sign_as(Purpose::Message, message)
    }

    /// Wraps `payload` (an encoded `purpose`) in a signed envelope.
    pub fn sign_as(&self, purpose: Purpose, message: &[u8]) -> Vec<u8> {
        let (id, secret) = &self.keys[0];
        let envelope = rmpv::Value::Array(vec![
            ENVELOPE_TAG.into(),
            id.as_str().into(),
            rmpv::Value::Binary(mac(secret, id, purpose, message)),
            rmpv::Value::Binary(message.to_vec()),
        ]);
        let mut out = Vec::with_capacity(message.len() + id.len() + 48);
        rmpv::encode::write_value(&mut out, &envelope).expect("writing to a Vec cannot fail");
        out
    }

    /// The message inside `payload` if its signature is good.
    pub fn verify(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        self.verify_as(Purpose::Message, payload)
    }

    /// The `purpose` inside `payload` if its signature, made for that purpose, is good.
    pub fn verify_as(
        &self,
        purpose: Purpose,
        payload: &[u8],
    ) -> std::result::Result<Vec<u8>, SignatureError> {
        let Some((id, tag, message)) = open_envelope(payload)? else {
            return Err(SignatureError::Unsigned(purpose));
        };
        let (_, secret) = self
            .keys
            .iter()
            .find(|(known, _)| *known == id)
            .ok_or_else(|| SignatureError::UnknownKey(purpose, id.clone()))?;
        let mut check = new_mac(secret, &id, purpose);
        check.update(&message);
        check
            .verify_slice(&tag)
            .map_err(|_| SignatureError::Mismatch(purpose, id.clone()))?;
        Ok(message)
    }
}

/// Whether `payload` is in a signed envelope (well formed or not), without checking it.
pub fn is_signed(payload: &[u8]) -> bool {
    payload.first() == Some(&ENVELOPE_BYTE)
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
    if !is_signed(payload) {
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

/// The MAC covers the key id and the purpose too, so a payload cannot be re-labelled with
/// another key nor passed off as another kind.
fn new_mac(secret: &[u8], id: &str, purpose: Purpose) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b"\0");
    mac.update(purpose.label());
    mac
}

fn mac(secret: &[u8], id: &str, purpose: Purpose, message: &[u8]) -> Vec<u8> {
    let mut mac = new_mac(secret, id, purpose);
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
            Err(SignatureError::Mismatch(Purpose::Message, "k1".into()))
        );
        assert_eq!(
            keys.verify(b"\x81\xa1a\x01"),
            Err(SignatureError::Unsigned(Purpose::Message))
        );
    }

    #[test]
    fn rotation_accepts_old_and_new_keys_and_signs_with_the_first() {
        let old = keys("old:0123456789abcdef");
        let both = keys("new:fedcba9876543210,old:0123456789abcdef");
        assert_eq!(both.signing_key_id(), "new");
        assert!(both.verify(&old.sign(b"\x80")).is_ok());
        assert_eq!(
            old.verify(&both.sign(b"\x80")),
            Err(SignatureError::UnknownKey(Purpose::Message, "new".into()))
        );
    }

    #[test]
    fn a_wrong_secret_under_a_known_id_is_a_mismatch() {
        let forged = keys("k1:not-the-real-secret!").sign(b"\x80");
        assert_eq!(
            keys("k1:0123456789abcdef").verify(&forged),
            Err(SignatureError::Mismatch(Purpose::Message, "k1".into()))
        );
    }

    #[test]
    fn a_mac_made_for_one_purpose_never_verifies_as_another() {
        let keys = keys("k1:0123456789abcdef");
        let schedule = keys.sign_as(Purpose::Schedule, b"\x80");
        assert!(keys.verify_as(Purpose::Schedule, &schedule).is_ok());
        for other in [
            Purpose::Message,
            Purpose::Control,
            Purpose::Cancel,
            Purpose::Pause,
        ] {
            assert_eq!(
                keys.verify_as(other, &schedule),
                Err(SignatureError::Mismatch(other, "k1".into()))
            );
        }
        assert_eq!(keys.sign(b"\x80"), keys.sign_as(Purpose::Message, b"\x80"));
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
