//! Money and prices: exact fixed-point amounts, a model's prices per million tokens, and the
//! bundled price catalog.
//!
//! Owns every number that becomes a cost. Nothing here is floating point: prices are read
//! from their decimal text into [`Money`] (integer units of 1e-16 USD), so a price times a
//! token count, and any sum of those, is exact.
//!
//! A model's prices come from its `'price.*_per_1m'` options, and for each price it does not
//! set, from the [`PriceCatalog`]: `prices.toml` (bundled; every entry names its source and
//! date), over which `--prices FILE` lays the user's own entries.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::chat::ChatRequest;
use super::remote::stack::TokenUsage;
use super::ModelOptions;
use crate::error::{OperatorError, Result};

/// An amount of money in integer units of 1e-16 USD. Prices per million tokens with up to
/// ten decimals are exact in it, and so is a price times a token count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(pub i128);

impl Money {
    /// Decimal places of the unit.
    pub const SCALE: u32 = 16;

    /// Parse a non-negative decimal (`0.25`, `3`, `1e-3` is refused) with at most
    /// [`Self::SCALE`] decimals.
    pub fn parse(text: &str) -> Option<Money> {
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > Self::SCALE as usize
            || int.len() > 18
        {
            return None;
        }
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut frac_units: i128 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        frac_units *= 10i128.pow(Self::SCALE - frac.len() as u32);
        Some(Money(int * 10i128.pow(Self::SCALE) + frac_units))
    }
}

impl fmt::Display for Money {
    /// `$1.2500000000000000` trimmed to `1.25`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = 10i128.pow(Self::SCALE);
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.abs();
        let frac = format!("{:016}", abs % unit);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            write!(f, "{sign}{}", abs / unit)
        } else {
            write!(f, "{sign}{}.{frac}", abs / unit)
        }
    }
}

/// A model's prices per million tokens (`'price.*_per_1m'`), in USD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prices {
    /// `'price.input_per_1m'`.
    pub input_per_1m: Option<Money>,
    /// `'price.output_per_1m'`.
    pub output_per_1m: Option<Money>,
    /// `'price.cache_read_per_1m'` (default: the input price).
    pub cache_read_per_1m: Option<Money>,
    /// `'price.cache_write_per_1m'` (default: the input price).
    pub cache_write_per_1m: Option<Money>,
}

impl Prices {
    /// Take the `'price.*'` options (no catalog).
    pub fn from_options(opts: &mut ModelOptions) -> Result<Self> {
        let mut price = |key: &str| -> Result<Option<Money>> {
            match opts.take(key) {
                None => Ok(None),
                Some(v) => Money::parse(&v).map(Some).ok_or_else(|| {
                    opts.error(
                        key,
                        format!(
                            "must be a non-negative decimal in USD per million tokens, got '{v}'"
                        ),
                    )
                }),
            }
        };
        Ok(Self {
            input_per_1m: price("price.input_per_1m")?,
            output_per_1m: price("price.output_per_1m")?,
            cache_read_per_1m: price("price.cache_read_per_1m")?,
            cache_write_per_1m: price("price.cache_write_per_1m")?,
        })
    }

    /// Whether input and output prices are both known.
    pub fn is_complete(&self) -> bool {
        self.input_per_1m.is_some() && self.output_per_1m.is_some()
    }

    /// The cost of `usage` (unknown prices count as zero). Exact: `tokens * price / 1e6` in
    /// units of 1e-16 USD, rounded up to the unit.
    pub fn cost(&self, usage: &TokenUsage) -> Money {
        let per = |tokens: Option<u64>, price: Option<Money>| -> i128 {
            tokens.unwrap_or(0) as i128 * price.unwrap_or_default().0
        };
        let micro = per(usage.input_tokens, self.input_per_1m)
            + per(usage.output_tokens, self.output_per_1m)
            + per(
                usage.cache_read_tokens,
                self.cache_read_per_1m.or(self.input_per_1m),
            )
            + per(
                usage.cache_write_tokens,
                self.cache_write_per_1m.or(self.input_per_1m),
            );
        Money((micro + 999_999) / 1_000_000)
    }

    /// The most a call can cost: the estimated input plus `max_tokens` of output.
    pub fn bound(&self, request: &ChatRequest) -> Money {
        self.cost(&TokenUsage {
            input_tokens: Some(request.estimated_input_tokens()),
            output_tokens: Some(u64::from(request.max_tokens)),
            ..TokenUsage::default()
        })
    }
}

/// The bundled catalog.
const BUNDLED: &str = include_str!("prices.toml");

/// One catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The prices.
    pub prices: Prices,
    /// Where the prices were read (a URL).
    pub source: String,
    /// When they were read (`YYYY-MM-DD`).
    pub date: String,
    /// The catalog file the entry comes from (`bundled` or the `--prices` path).
    pub file: String,
}

impl CatalogEntry {
    /// `catalog <file>: <source> (<date>)`, for `explain`.
    pub fn describe(&self) -> String {
        format!(
            "price catalog {}: {} ({})",
            self.file, self.source, self.date
        )
    }
}

/// Prices of common models by provider and model id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceCatalog {
    entries: BTreeMap<(String, String), CatalogEntry>,
}

impl Default for PriceCatalog {
    fn default() -> Self {
        Self::bundled()
    }
}

/// A price as written in the file: `"0.80"` (exact), or a TOML number, read back through its
/// shortest decimal form (`0.8` -> `"0.8"`), which is the decimal the user wrote.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPrice {
    Text(String),
    Int(u64),
    Float(f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    provider: String,
    model_id: String,
    input_per_1m: RawPrice,
    output_per_1m: Option<RawPrice>,
    cache_read_per_1m: Option<RawPrice>,
    cache_write_per_1m: Option<RawPrice>,
    source: String,
    date: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    price: Vec<RawEntry>,
}

impl PriceCatalog {
    /// The catalog shipped with strata.
    pub fn bundled() -> Self {
        Self::parse(BUNDLED, "bundled").expect("the bundled price catalog is valid (tested)")
    }

    /// The bundled catalog with the entries of `path` laid over it (same provider and model
    /// id: the file wins).
    pub fn with_file(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| OperatorError::Prices {
            file: file.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        let mut catalog = Self::bundled();
        catalog.entries.extend(Self::parse(&text, &file)?.entries);
        Ok(catalog)
    }

    /// Parse a catalog file's text; `file` names it in errors and in [`CatalogEntry::file`].
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let err = |message: String| OperatorError::Prices {
            file: file.to_string(),
            message,
        };
        let raw: RawCatalog = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut entries = BTreeMap::new();
        for (i, e) in raw.price.into_iter().enumerate() {
            let at = format!("[[price]] #{} ({} {})", i + 1, e.provider, e.model_id);
            let money = |what: &str, p: RawPrice| -> Result<Money> {
                let text = match p {
                    RawPrice::Text(t) => t,
                    RawPrice::Int(n) => n.to_string(),
                    RawPrice::Float(f) => format!("{f}"),
                };
                Money::parse(&text).ok_or_else(|| {
                    err(format!(
                        "{at}: {what} must be a non-negative decimal in USD per million tokens, \
                         got '{text}'"
                    ))
                })
            };
            let opt = |what: &str, p: Option<RawPrice>| p.map(|p| money(what, p)).transpose();
            if e.provider.trim().is_empty() || e.model_id.trim().is_empty() {
                return Err(err(format!(
                    "{at}: provider and model_id must not be empty"
                )));
            }
            if e.source.trim().is_empty() {
                return Err(err(format!(
                    "{at}: source must say where the prices come from (a URL)"
                )));
            }
            if chrono::NaiveDate::parse_from_str(&e.date, "%Y-%m-%d").is_err() {
                return Err(err(format!(
                    "{at}: date must be the day the prices were read, as YYYY-MM-DD, got '{}'",
                    e.date
                )));
            }
            let entry = CatalogEntry {
                prices: Prices {
                    input_per_1m: Some(money("input_per_1m", e.input_per_1m)?),
                    output_per_1m: opt("output_per_1m", e.output_per_1m)?,
                    cache_read_per_1m: opt("cache_read_per_1m", e.cache_read_per_1m)?,
                    cache_write_per_1m: opt("cache_write_per_1m", e.cache_write_per_1m)?,
                },
                source: e.source,
                date: e.date,
                file: file.to_string(),
            };
            let key = (e.provider.to_ascii_lowercase(), e.model_id.clone());
            if entries.insert(key, entry).is_some() {
                return Err(err(format!("{at}: the model is listed twice")));
            }
        }
        Ok(Self { entries })
    }

    /// The entry for `model_id` of `provider`. Bedrock's cross-region inference profiles
    /// (`us.`, `eu.`, `apac.`, `global.` before the model id) cost what the model costs.
    pub fn lookup(&self, provider: &str, model_id: &str) -> Option<&CatalogEntry> {
        let provider = provider.to_ascii_lowercase();
        let get = |id: &str| self.entries.get(&(provider.clone(), id.to_string()));
        get(model_id).or_else(|| {
            let (prefix, rest) = model_id.split_once('.')?;
            (provider == "bedrock" && ["us", "eu", "apac", "global", "us-gov"].contains(&prefix))
                .then(|| get(rest))
                .flatten()
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Prices {
    /// The model's prices: its `'price.*'` options, and for each price they leave unset, the
    /// catalog's entry for `(provider, model_id)`. Also says where catalog prices came from.
    pub fn resolve(
        opts: &mut ModelOptions,
        provider: &str,
        model_id: Option<&str>,
        catalog: &PriceCatalog,
    ) -> Result<(Self, Option<CatalogEntry>)> {
        let own = Self::from_options(opts)?;
        let Some(entry) = model_id.and_then(|id| catalog.lookup(provider, id)) else {
            return Ok((own, None));
        };
        let c = entry.prices;
        let merged = Prices {
            input_per_1m: own.input_per_1m.or(c.input_per_1m),
            output_per_1m: own.output_per_1m.or(c.output_per_1m),
            cache_read_per_1m: own.cache_read_per_1m.or(c.cache_read_per_1m),
            cache_write_per_1m: own.cache_write_per_1m.or(c.cache_write_per_1m),
        };
        let used = merged != own;
        Ok((merged, used.then(|| entry.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_and_prints_exactly() {
        assert_eq!(Money::parse("0.25").unwrap().to_string(), "0.25");
        assert_eq!(Money::parse("3").unwrap().to_string(), "3");
        assert_eq!(Money::parse(".5").unwrap().to_string(), "0.5");
        assert_eq!(Money::parse("0.0000000000000001").unwrap(), Money(1));
        assert!(Money::parse("-1").is_none());
        assert!(Money::parse("1e-3").is_none());
        assert!(Money::parse("").is_none());
        assert!(Money::parse("0.00000000000000001").is_none());
    }

    #[test]
    fn cost_is_exact_fixed_point() {
        let prices = Prices {
            input_per_1m: Money::parse("0.25"),
            output_per_1m: Money::parse("1.25"),
            ..Prices::default()
        };
        let usage = TokenUsage {
            input_tokens: Some(1_000),
            output_tokens: Some(200),
            ..TokenUsage::default()
        };
        // 1000 * 0.25/1e6 + 200 * 1.25/1e6 = 0.00025 + 0.00025
        assert_eq!(prices.cost(&usage).to_string(), "0.0005");
        // A million calls of one token each sum to exactly the price of a million tokens.
        let one = prices.cost(&TokenUsage {
            input_tokens: Some(1),
            ..TokenUsage::default()
        });
        assert_eq!(Money(one.0 * 1_000_000).to_string(), "0.25");
    }

    #[test]
    fn the_bundled_catalog_parses_and_every_entry_has_a_source() {
        let c = PriceCatalog::bundled();
        assert!(c.len() >= 10, "{}", c.len());
        for e in c.entries.values() {
            assert!(e.source.starts_with("https://"), "{e:?}");
            assert!(e.prices.input_per_1m.is_some());
        }
        let haiku = c
            .lookup("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0")
            .expect("haiku is listed");
        assert_eq!(haiku.prices.input_per_1m.unwrap().to_string(), "0.8");
        // A cross-region inference profile costs what the model costs.
        assert_eq!(
            c.lookup("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            Some(haiku)
        );
        assert!(c
            .lookup("openai", "anthropic.claude-3-5-haiku-20241022-v1:0")
            .is_none());
    }

    #[test]
    fn a_user_file_overrides_and_extends_the_bundled_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(
            &path,
            r#"
[[price]]
provider = "bedrock"
model_id = "anthropic.claude-3-5-haiku-20241022-v1:0"
input_per_1m = 0.7
output_per_1m = "3.5"
source = "https://example.com/our-contract"
date = "2026-11-01"

[[price]]
provider = "openai"
model_id = "gpt-4o-mini"
input_per_1m = "0.15"
output_per_1m = 1
source = "https://openai.com/api/pricing/"
date = "2026-11-01"
"#,
        )
        .unwrap();
        let c = PriceCatalog::with_file(&path).unwrap();
        assert_eq!(c.len(), PriceCatalog::bundled().len() + 1);
        let haiku = c
            .lookup("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0")
            .unwrap();
        // TOML floats are read through their shortest decimal form: 0.7 is exactly 0.7.
        assert_eq!(haiku.prices.input_per_1m, Money::parse("0.7"));
        assert_eq!(haiku.prices.cache_read_per_1m, None);
        assert_eq!(haiku.file, path.display().to_string());
        assert_eq!(
            c.lookup("openai", "gpt-4o-mini")
                .unwrap()
                .prices
                .output_per_1m,
            Money::parse("1")
        );
    }

    #[test]
    fn bad_catalog_files_name_the_entry_and_the_fix() {
        let bad = |text: &str| PriceCatalog::parse(text, "p.toml").unwrap_err().to_string();
        let entry =
            |extra: &str| format!("[[price]]\nprovider = \"bedrock\"\nmodel_id = \"m\"\n{extra}\n");
        let e = bad(&entry(
            "input_per_1m = \"-1\"\nsource = \"https://x\"\ndate = \"2026-01-01\"",
        ));
        assert!(
            e.contains("p.toml") && e.contains("bedrock m") && e.contains("input_per_1m"),
            "{e}"
        );
        let e = bad(&entry(
            "input_per_1m = \"1\"\nsource = \"https://x\"\ndate = \"yesterday\"",
        ));
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        let e = bad(&entry(
            "input_per_1m = \"1\"\nsource = \"\"\ndate = \"2026-01-01\"",
        ));
        assert!(e.contains("source"), "{e}");
        let e = bad(&entry(
            "input_per_1m = \"1\"\nsource = \"https://x\"\ndate = \"2026-01-01\"\ncolour = 1",
        ));
        assert!(e.contains("colour"), "{e}");
        assert!(bad("[[price]\n").contains("p.toml"));
    }

    #[test]
    fn options_win_over_the_catalog_price_by_price() {
        let catalog = PriceCatalog::bundled();
        let mut opts = ModelOptions::new("m", [("price.output_per_1m", "5")]);
        let (prices, from) = Prices::resolve(
            &mut opts,
            "bedrock",
            Some("anthropic.claude-3-5-haiku-20241022-v1:0"),
            &catalog,
        )
        .unwrap();
        assert_eq!(prices.output_per_1m, Money::parse("5"));
        assert_eq!(prices.input_per_1m, Money::parse("0.8"));
        assert!(from.is_some());
        let mut opts = ModelOptions::new("m", [("price.input_per_1m", "1")]);
        let (prices, from) =
            Prices::resolve(&mut opts, "openai", Some("unlisted"), &catalog).unwrap();
        assert_eq!(prices.input_per_1m, Money::parse("1"));
        assert!(from.is_none());
    }
}
