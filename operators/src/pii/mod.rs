//! PII detection and redaction over plain text, without DataFusion.
//!
//! Owns the entity names (those of Amazon Bedrock Guardrails), the detectors (patterns,
//! checksums, number-plan validation and context words), overlap resolution, code-point
//! offsets and the redaction operators. The SQL functions `detect_pii` and `redact_pii`
//! (`crate::udfs::pii`) are thin wrappers over [`PiiDetector`] and [`redact`].
//!
//! How a text is scanned, in time linear in its length:
//! 1. cheap byte checks decide which detector families can match at all (no digit, no
//!    `@`, no `:` ... skips the family);
//! 2. each family's regex (DFA, literal prefilters where the pattern has one) yields
//!    candidates, and an Aho-Corasick automaton finds context words ("password", "cvv",
//!    "routing", ...) that trigger the context-only entities;
//! 3. every candidate is validated (Luhn, ABA, mod-97, mod-11, VIN check digit, SSA rules,
//!    `std::net` parsing, libphonenumber metadata); a failing checksum drops it;
//! 4. context words before a candidate raise its score; candidates under
//!    [`PiiConfig::min_score`] are dropped; overlapping candidates resolve to one span
//!    (validated beats unvalidated, then longer beats shorter, then the higher score).
//!
//! NAME and ADDRESS need a token-classification model; they are named here so `types`
//! can list them, but [`PiiDetector`] refuses them until that model is wired in.

mod detect;
mod redact;
pub mod validate;

use std::fmt;
use std::str::FromStr;

pub use detect::PiiDetector;
pub use redact::{redact, RedactOperator};

use crate::error::OperatorError;

macro_rules! entities {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A PII entity type, named as Amazon Bedrock Guardrails names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EntityType {
            $($(#[$doc])* $variant,)*
        }

        impl EntityType {
            /// Every entity type, in declaration order.
            pub const ALL: &'static [EntityType] = &[$(EntityType::$variant,)*];

            /// The Bedrock Guardrails name, e.g. `EMAIL`.
            pub fn name(self) -> &'static str {
                match self {
                    $(EntityType::$variant => $name,)*
                }
            }
        }
    };
}

entities! {
    /// An e-mail address.
    Email = "EMAIL",
    /// A phone number, national or international, valid in its numbering plan.
    Phone = "PHONE",
    /// A payment card number (Luhn and a known issuer prefix).
    CreditDebitCardNumber = "CREDIT_DEBIT_CARD_NUMBER",
    /// A card verification value, after a context word such as "CVV".
    CreditDebitCardCvv = "CREDIT_DEBIT_CARD_CVV",
    /// A card expiry date (MM/YY), after a context word such as "exp".
    CreditDebitCardExpiry = "CREDIT_DEBIT_CARD_EXPIRY",
    /// A US Social Security number (SSA area/group/serial rules).
    UsSocialSecurityNumber = "US_SOCIAL_SECURITY_NUMBER",
    /// A US Individual Taxpayer Identification Number.
    UsIndividualTaxIdentificationNumber = "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
    /// A US ABA routing number (checksum), after a context word.
    UsBankRoutingNumber = "US_BANK_ROUTING_NUMBER",
    /// A US bank account number, after a context word.
    UsBankAccountNumber = "US_BANK_ACCOUNT_NUMBER",
    /// A US passport number, after a context word.
    UsPassportNumber = "US_PASSPORT_NUMBER",
    /// An IBAN (per-country length and mod-97).
    InternationalBankAccountNumber = "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    /// A SWIFT/BIC code.
    SwiftCode = "SWIFT_CODE",
    /// An IPv4 or IPv6 address.
    IpAddress = "IP_ADDRESS",
    /// A MAC address.
    MacAddress = "MAC_ADDRESS",
    /// A URL.
    Url = "URL",
    /// An AWS access key id (AKIA..., ASIA...).
    AwsAccessKey = "AWS_ACCESS_KEY",
    /// An AWS secret access key (40 characters, high entropy, context).
    AwsSecretKey = "AWS_SECRET_KEY",
    /// A password, after a context word.
    Password = "PASSWORD",
    /// A user name, after a context word.
    Username = "USERNAME",
    /// A UK National Insurance number.
    UkNationalInsuranceNumber = "UK_NATIONAL_INSURANCE_NUMBER",
    /// A UK NHS number (mod-11).
    UkNationalHealthServiceNumber = "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
    /// A Canadian Social Insurance Number (Luhn).
    CaSocialInsuranceNumber = "CA_SOCIAL_INSURANCE_NUMBER",
    /// A vehicle identification number (check digit).
    VehicleIdentificationNumber = "VEHICLE_IDENTIFICATION_NUMBER",
    /// A person's name (needs the NER model).
    Name = "NAME",
    /// A postal address (needs the NER model).
    Address = "ADDRESS",
}

impl EntityType {
    /// Does this type need the token-classification (NER) model?
    pub fn needs_ner(self) -> bool {
        matches!(self, EntityType::Name | EntityType::Address)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EntityType {
    type Err = OperatorError;

    /// Case-insensitive Bedrock Guardrails name; surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        EntityType::ALL
            .iter()
            .copied()
            .find(|e| e.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| OperatorError::UnknownPiiEntity {
                name: s.to_string(),
                known: EntityType::ALL
                    .iter()
                    .map(|e| e.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A set of entity types (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntitySet(u32);

impl EntitySet {
    /// No type.
    pub const fn empty() -> Self {
        EntitySet(0)
    }

    /// Every type that the regex-and-checksum detectors find (all but NAME and ADDRESS).
    pub fn structured() -> Self {
        EntityType::ALL
            .iter()
            .filter(|e| !e.needs_ner())
            .fold(Self::empty(), |s, e| s.with(*e))
    }

    /// This set plus `e`.
    pub fn with(self, e: EntityType) -> Self {
        EntitySet(self.0 | e.bit())
    }

    /// Is `e` in the set?
    pub fn contains(self, e: EntityType) -> bool {
        self.0 & e.bit() != 0
    }

    /// Is the set empty?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = EntityType> {
        EntityType::ALL
            .iter()
            .copied()
            .filter(move |e| self.contains(*e))
    }

    /// Parse entity names (each case-insensitive); an unknown name is an error.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, OperatorError> {
        names
            .into_iter()
            .filter(|n| !n.trim().is_empty())
            .try_fold(Self::empty(), |s, n| Ok(s.with(n.parse()?)))
    }
}

impl FromIterator<EntityType> for EntitySet {
    fn from_iter<I: IntoIterator<Item = EntityType>>(iter: I) -> Self {
        iter.into_iter().fold(Self::empty(), |s, e| s.with(e))
    }
}

/// One detected entity. Offsets count Unicode code points, `end_char` exclusive, so
/// `substr(text, start_char + 1, end_char - start_char)` in SQL is the entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Entity type.
    pub entity_type: EntityType,
    /// First code point of the entity.
    pub start_char: usize,
    /// One past the last code point of the entity.
    pub end_char: usize,
    /// Byte offset of the entity in the UTF-8 text.
    pub start_byte: usize,
    /// Byte offset one past the entity.
    pub end_byte: usize,
    /// Confidence in [0, 1]: validated patterns score high, context words raise it.
    pub score: f64,
}

/// The job's PII settings (`SET pii.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct PiiConfig {
    /// Name of the environment variable holding the key of `redact_pii(..., 'hash')`
    /// (`pii.hash_key_env`); without it, the `'hash'` operator is a plan error.
    pub hash_key_env: Option<String>,
    /// Detections scoring below this are dropped (`pii.min_score`, default 0.5).
    pub min_score: f64,
    /// Run the NER model for NAME and ADDRESS (`pii.ner`). Defaults to false: the model
    /// is not wired in yet, and `true` is refused at plan time rather than ignored.
    pub ner: bool,
}

impl Default for PiiConfig {
    fn default() -> Self {
        Self {
            hash_key_env: None,
            min_score: DEFAULT_MIN_SCORE,
            ner: false,
        }
    }
}

/// Default of `pii.min_score`.
pub const DEFAULT_MIN_SCORE: f64 = 0.5;

impl PiiConfig {
    /// Check the settings: `min_score` in [0, 1], a non-empty variable name, and no NER
    /// (not available yet). Errors name the setting.
    pub fn validate(&self) -> Result<(), OperatorError> {
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(OperatorError::PiiSetting {
                key: "pii.min_score",
                message: format!("must be a number between 0 and 1, got {}", self.min_score),
            });
        }
        if let Some(v) = &self.hash_key_env {
            if v.trim().is_empty() || v.contains('=') || v.contains('\0') {
                return Err(OperatorError::PiiSetting {
                    key: "pii.hash_key_env",
                    message: format!("must name an environment variable, got '{v}'"),
                });
            }
        }
        if self.ner {
            return Err(OperatorError::PiiSetting {
                key: "pii.ner",
                message: "true needs the NAME/ADDRESS token-classification model, which this \
                          build does not have yet; set pii.ner = false (the default) to run the \
                          regex-and-checksum detectors"
                    .to_string(),
            });
        }
        Ok(())
    }

    /// The hash key: the value of the variable `hash_key_env` names.
    pub fn hash_key(&self) -> Result<Vec<u8>, OperatorError> {
        let Some(var) = &self.hash_key_env else {
            return Err(OperatorError::PiiHashKey {
                message: "the 'hash' operator needs a key: SET pii.hash_key_env = 'VAR' and \
                          export VAR with a secret of at least 16 bytes"
                    .to_string(),
            });
        };
        match std::env::var(var) {
            Ok(k) if k.len() >= 16 => Ok(k.into_bytes()),
            Ok(k) => Err(OperatorError::PiiHashKey {
                message: format!(
                    "the key in ${var} (pii.hash_key_env) is {} bytes; use at least 16",
                    k.len()
                ),
            }),
            Err(_) => Err(OperatorError::PiiHashKey {
                message: format!(
                    "pii.hash_key_env names ${var}, which is not set (or not UTF-8); export it \
                     with a secret of at least 16 bytes"
                ),
            }),
        }
    }
}
