//! Redaction operators: replace each detected span of a text.

use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Detection;
use crate::error::OperatorError;

/// How `redact_pii` replaces an entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RedactOperator {
    /// `{EMAIL}`, `{PHONE}`, ... as Bedrock Guardrails masks (the default).
    #[default]
    Mask,
    /// `{EMAIL:<16 hex>}`: the first 64 bits of HMAC-SHA256(key, entity text), so the same
    /// value gives the same token across rows and runs (joins still work) without the key
    /// giving it away.
    Hash,
    /// The entity is deleted.
    Remove,
}

impl FromStr for RedactOperator {
    type Err = OperatorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mask" => Ok(Self::Mask),
            "hash" => Ok(Self::Hash),
            "remove" => Ok(Self::Remove),
            _ => Err(OperatorError::UnknownRedactOperator {
                name: s.to_string(),
            }),
        }
    }
}

/// `text` with every detection replaced. `detections` must not overlap (as
/// [`super::PiiDetector::detect`] returns them); `key` is needed for [`RedactOperator::Hash`].
pub fn redact(
    text: &str,
    detections: &[Detection],
    op: RedactOperator,
    key: Option<&[u8]>,
) -> Result<String, OperatorError> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut spans: Vec<&Detection> = detections.iter().collect();
    spans.sort_by_key(|d| d.start_byte);
    for d in spans {
        if d.start_byte < at || d.end_byte > text.len() {
            continue;
        }
        out.push_str(&text[at..d.start_byte]);
        match op {
            RedactOperator::Mask => {
                out.push('{');
                out.push_str(d.entity_type.name());
                out.push('}');
            }
            RedactOperator::Hash => {
                let key = key.ok_or_else(|| OperatorError::PiiHashKey {
                    message: "the 'hash' operator needs a key (SET pii.hash_key_env)".to_string(),
                })?;
                out.push('{');
                out.push_str(d.entity_type.name());
                out.push(':');
                out.push_str(&keyed_hash(key, &text[d.start_byte..d.end_byte]));
                out.push('}');
            }
            RedactOperator::Remove => {}
        }
        at = d.end_byte;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// First 64 bits of HMAC-SHA256(key, value), as 16 lowercase hex digits.
pub fn keyed_hash(key: &[u8], value: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(value.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}
