//! Money: a decimal amount in a known currency at that currency's scale. No float touches money.

use rust_decimal::Decimal;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A currency the platform can hold, with its number of minor-unit digits (ISO 4217 exponent; for
/// crypto, the unit the platform books in) and the limits every amount and balance in it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    scale: u32,
    /// The largest single amount, in whole units: any deposit, stake, win, withdrawal or settle
    /// delta. Above the largest jackpot ever paid (about EUR 20 million), far below what could
    /// overflow anything.
    amount_units_max: i64,
    /// The largest balance one player may hold (cash + bonus + held), in whole units.
    balance_units_max: i64,
}

/// Every currency the platform books. Adding one here is a contract change: it must be a real
/// ISO 4217 code (or a crypto ticker) with its real exponent.
///
/// The limits are what make the ledger's arithmetic exact: the largest balance of any currency is
/// at most 10^12 minor units (`i64` holds 9.2 * 10^18, so every dialect's integer minor units fit a
/// million times over), and a `Decimal` holds 28 digits exactly, so sums over every account of a
/// cell never round. [`LEDGER_MINOR_UNITS_MAX`] is checked against the table in a test.
const CURRENCIES: &[Currency] = &[
    Currency { code: "BTC", scale: 8, amount_units_max: 1_000, balance_units_max: 10_000 },
    Currency { code: "CHF", scale: 2, amount_units_max: 100_000_000, balance_units_max: 1_000_000_000 },
    Currency { code: "DKK", scale: 2, amount_units_max: 1_000_000_000, balance_units_max: 10_000_000_000 },
    Currency { code: "EUR", scale: 2, amount_units_max: 100_000_000, balance_units_max: 1_000_000_000 },
    Currency { code: "GBP", scale: 2, amount_units_max: 100_000_000, balance_units_max: 1_000_000_000 },
    Currency { code: "ISK", scale: 0, amount_units_max: 10_000_000_000, balance_units_max: 100_000_000_000 },
    Currency { code: "JPY", scale: 0, amount_units_max: 10_000_000_000, balance_units_max: 100_000_000_000 },
    Currency { code: "NOK", scale: 2, amount_units_max: 1_000_000_000, balance_units_max: 10_000_000_000 },
    Currency { code: "SEK", scale: 2, amount_units_max: 1_000_000_000, balance_units_max: 10_000_000_000 },
    Currency { code: "USD", scale: 2, amount_units_max: 100_000_000, balance_units_max: 1_000_000_000 },
];

/// The most minor units any one balance of any currency may reach (see [`CURRENCIES`]).
pub const LEDGER_MINOR_UNITS_MAX: i64 = 1_000_000_000_000;

impl Currency {
    /// Looks a currency up by its upper-case code.
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES.iter().find(|c| c.code == code).copied().ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Number of digits after the decimal point an amount in this currency may have.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The largest single amount (either sign) accepted in this currency.
    pub fn amount_max(&self) -> Decimal {
        Decimal::from(self.amount_units_max)
    }

    /// The largest balance (cash + bonus + held) one player may hold in this currency.
    pub fn balance_max(&self) -> Decimal {
        Decimal::from(self.balance_units_max)
    }

    /// `amount` in whole minor units (`"12.34"` GBP is 1234), if it has at most this currency's
    /// decimals and fits an `i64`. Never rounds.
    pub fn to_minor(&self, amount: Decimal) -> Option<i64> {
        let minor = amount.checked_mul(Decimal::from(10i64.checked_pow(self.scale)?))?;
        if !minor.fract().is_zero() {
            return None;
        }
        i64::try_from(minor.trunc()).ok()
    }

    /// `minor` minor units as an amount (1234 GBP minor units is `"12.34"`). Exact for any `i64`.
    pub fn from_minor(&self, minor: i64) -> Decimal {
        Decimal::new(minor, self.scale)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Currency {
    fn schema_name() -> Cow<'static, str> {
        "Currency".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let codes: Vec<&str> = CURRENCIES.iter().map(|c| c.code).collect();
        json_schema!({ "type": "string", "enum": codes, "description": "ISO 4217 code (or crypto ticker)" })
    }
}

/// A decimal amount as it travels: always a JSON string such as `"10.00"`, never a number, so no
/// client or intermediary can round it through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(pub Decimal);

impl Amount {
    /// Formats at exactly `scale` digits (`"10.00"`), the form every response uses.
    pub fn at_scale(value: Decimal, scale: u32) -> Amount {
        let mut v = value;
        v.rescale(scale);
        Amount(v)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_amount(&text).map(Amount).map_err(serde::de::Error::custom)
    }
}

/// Plain decimal notation only: an optional `-`, digits without leading zeros, an optional
/// fraction of 1 to 8 digits (no currency has more decimals). No exponent, no `+`, no spaces, no
/// more than `Decimal` holds. A number too large for any currency still parses, so that it is
/// refused as too large (`AMOUNT_TOO_LARGE`) rather than as malformed.
fn parse_amount(text: &str) -> Result<Decimal, String> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let leading_zero = int.len() > 1 && int.starts_with('0');
    let well_formed = !int.is_empty()
        && !leading_zero
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= AMOUNT_FRACTION_DIGITS_MAX
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !well_formed {
        return Err(format!("`{text}` is not a decimal amount such as \"10.00\""));
    }
    Decimal::from_str_exact(text).map_err(|_| format!("`{text}` is out of range for an amount"))
}

/// Most digits after the point an amount may have ([`parse_amount`]).
const AMOUNT_FRACTION_DIGITS_MAX: usize = 8;
/// Every amount's form, in any currency, as documents state it: what [`parse_amount`] takes, short
/// of numbers larger than any currency's largest amount (12 digits: no currency's has 12).
pub const AMOUNT_PATTERN: &str = r"^-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,8})?$";

impl JsonSchema for Amount {
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": AMOUNT_PATTERN,
            "description": "decimal amount as a string, at most the currency's scale, e.g. \"10.00\""
        })
    }
}

/// Which amounts a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountSign {
    /// Greater than zero: a deposit, a withdrawal, a stake.
    Positive,
    /// Any sign, zero included: a settle's `delta`.
    Any,
}

impl Currency {
    /// Exactly the strings an amount field of sign `sign` takes in this currency, as a regular
    /// expression (without lookarounds, so a schema-driven generator can produce them): the
    /// [`AMOUNT_PATTERN`] form, at most the currency's scale (trailing zeros aside), at most its
    /// largest single amount. What [`Money::positive`] and [`Money::signed`] accept, for a schema.
    pub fn amount_pattern(&self, sign: AmountSign) -> String {
        let max = self.amount_units_max;
        let zeros = max.to_string().len() - 1;
        assert_eq!(max, 10_i64.pow(zeros as u32), "largest amounts are powers of ten");
        let scale = self.scale as usize;
        let spare = AMOUNT_FRACTION_DIGITS_MAX - scale;
        let fraction = if scale == 0 {
            format!(r"(\.0{{1,{spare}}})?")
        } else {
            format!(r"(\.[0-9]{{1,{scale}}}0{{0,{spare}}})?")
        };
        let below_max = format!(r"[1-9][0-9]{{0,{}}}{fraction}", zeros - 1);
        let at_max = format!(r"1{}(\.0{{1,8}})?", "0".repeat(zeros));
        match sign {
            AmountSign::Any => format!(r"^-?(0{fraction}|{below_max}|{at_max})$"),
            AmountSign::Positive => {
                // Below one unit: some digit within the scale is not zero.
                let fractions: Vec<String> = (0..scale)
                    .map(|leading| format!(r"0{{{leading}}}[1-9][0-9]{{0,{}}}", scale - 1 - leading))
                    .collect();
                let below_one = match fractions.is_empty() {
                    true => String::new(),
                    false => format!(r"|0\.({})0{{0,{spare}}}", fractions.join("|")),
                };
                format!(r"^({below_max}|{at_max}{below_one})$")
            }
        }
    }
}

/// Adds to an object's schema one branch per currency (`anyOf`, told apart by `currency`): with
/// that currency, the amounts its `field` takes. A schema as strict as the code, in a form a
/// generator draws from without discarding most of what it draws.
pub fn amount_rules(schema: &mut Schema, field: &str, sign: AmountSign) {
    let branches: Vec<serde_json::Value> = CURRENCIES
        .iter()
        .map(|c| {
            serde_json::json!({
                "properties": { "currency": { "const": c.code }, field: { "type": "string", "pattern": c.amount_pattern(sign) } }
            })
        })
        .collect();
    schema.insert("anyOf".into(), branches.into());
}

/// [`amount_rules`] for a positive `amount` (schemars `transform`).
pub fn positive_amount_rules(schema: &mut Schema) {
    amount_rules(schema, "amount", AmountSign::Positive);
}

/// [`amount_rules`] for a signed `delta` (schemars `transform`).
pub fn signed_delta_rules(schema: &mut Schema) {
    amount_rules(schema, "delta", AmountSign::Any);
}

impl FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_amount(s).map(Amount)
    }
}

/// Why an amount is not valid money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency `{0}`: one of {known}", known = known_codes())]
    UnknownCurrency(String),
    #[error("{amount} has more decimals than {currency} allows ({scale})")]
    TooManyDecimals { amount: Decimal, currency: &'static str, scale: u32 },
    #[error("{0} is negative where only a positive amount is allowed")]
    Negative(Decimal),
    #[error("amount must be greater than zero")]
    Zero,
    #[error("{amount} {currency} is over the largest single amount this platform accepts ({max} {currency})")]
    TooLarge { amount: Decimal, currency: &'static str, max: Decimal },
}

/// Every currency code, for a refusal that names the allowed values.
fn known_codes() -> String {
    CURRENCIES.iter().map(|c| c.code).collect::<Vec<_>>().join(", ")
}

impl MoneyError {
    /// The stable code an HTTP boundary answers with.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            MoneyError::TooManyDecimals { .. } => "AMOUNT_SCALE",
            MoneyError::Negative(_) => "AMOUNT_NEGATIVE",
            MoneyError::Zero => "AMOUNT_ZERO",
            MoneyError::TooLarge { .. } => "AMOUNT_TOO_LARGE",
        }
    }
}

/// An amount in a currency, at most that currency's scale. Signed: a `delta` may be negative;
/// constructors that take money in from outside check the sign they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Any sign; scale and size checked (at most the currency's `amount_max` either way).
    pub fn signed(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount.abs() > currency.amount_max() {
            return Err(MoneyError::TooLarge { amount, currency: currency.code, max: currency.amount_max() });
        }
        if amount.normalize().scale() > currency.scale {
            return Err(MoneyError::TooManyDecimals { amount, currency: currency.code, scale: currency.scale });
        }
        Ok(Money { amount: amount.normalize(), currency })
    }

    /// Strictly positive, scale and size checked: what a deposit, stake or withdrawal must be.
    pub fn positive(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative(amount));
        }
        if amount.is_zero() {
            return Err(MoneyError::Zero);
        }
        Money::signed(amount, currency)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount as it travels, at the currency's scale.
    pub fn wire(&self) -> Amount {
        Amount::at_scale(self.amount, self.currency.scale)
    }
}

/// `{"amount": "5.00", "currency": "GBP"}`.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Money", 2)?;
        out.serialize_field("amount", &self.wire())?;
        out.serialize_field("currency", &self.currency)?;
        out.end()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.wire(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbp() -> Currency {
        Currency::from_code("GBP").expect("GBP is known")
    }

    #[test]
    fn scale_is_checked() {
        let ok = Money::positive(Decimal::from_str("10.00").unwrap(), gbp()).unwrap();
        assert_eq!(ok.wire().to_string(), "10.00");
        let err = Money::positive(Decimal::from_str("10.001").unwrap(), gbp()).unwrap_err();
        assert_eq!(err.code(), "AMOUNT_SCALE");
        // Trailing zeros beyond the scale carry no extra precision.
        assert!(Money::positive(Decimal::from_str("10.0000").unwrap(), gbp()).is_ok());
    }

    #[test]
    fn sign_is_checked() {
        let err = Money::positive(Decimal::from_str("-5").unwrap(), gbp()).unwrap_err();
        assert_eq!(err.code(), "AMOUNT_NEGATIVE");
        assert_eq!(Money::positive(Decimal::ZERO, gbp()).unwrap_err().code(), "AMOUNT_ZERO");
        assert!(Money::signed(Decimal::from_str("-5").unwrap(), gbp()).is_ok());
    }

    #[test]
    fn amounts_parse_only_plain_decimals() {
        for bad in ["", "1e3", "+1", " 1", "1.", ".5", "1,00", "NaN", "0x10"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} must be refused");
        }
        for good in ["0", "10.00", "-5", "123456.78"] {
            assert!(good.parse::<Amount>().is_ok(), "{good:?} must parse");
        }
        assert!(serde_json::from_str::<Amount>("10.0").is_err(), "a JSON number is refused");
    }

    #[test]
    fn amounts_are_bounded_per_currency() {
        let max = gbp().amount_max();
        assert!(Money::positive(max, gbp()).is_ok());
        for over in [max + Decimal::new(1, 2), Decimal::from_str("79228162514264337593543950335").unwrap()] {
            assert_eq!(Money::positive(over, gbp()).unwrap_err().code(), "AMOUNT_TOO_LARGE");
            assert_eq!(Money::signed(-over, gbp()).unwrap_err().code(), "AMOUNT_TOO_LARGE");
        }
        // 28 significant digits with decimals: too large, not rounded.
        let long = Decimal::from_str("1234567890123456789012345.678").unwrap();
        assert_eq!(Money::positive(long, gbp()).unwrap_err().code(), "AMOUNT_TOO_LARGE");
    }

    #[test]
    fn every_balance_fits_the_ledger_and_every_dialect_exactly() {
        for c in CURRENCIES {
            assert!(c.amount_max() <= c.balance_max(), "{}: an amount fits a balance", c.code);
            let minor = c.to_minor(c.balance_max()).expect("a balance has whole minor units");
            assert!(minor <= LEDGER_MINOR_UNITS_MAX, "{}: {minor} minor units", c.code);
        }
        // A million maximal balances still sum exactly: 10^18 minor units, 28 digits at scale 8.
        let big = Decimal::from(LEDGER_MINOR_UNITS_MAX) * Decimal::from(1_000_000);
        assert_eq!(big.checked_add(Decimal::new(1, 8)).unwrap() - big, Decimal::new(1, 8));
    }

    #[test]
    fn minor_units_convert_exactly_or_not_at_all() {
        assert_eq!(gbp().to_minor(Decimal::from_str("12.34").unwrap()), Some(1234));
        assert_eq!(gbp().to_minor(Decimal::from_str("12.345").unwrap()), None);
        assert_eq!(gbp().to_minor(Decimal::MAX), None);
        assert_eq!(gbp().from_minor(i64::MAX).to_string(), "92233720368547758.07");
    }

    #[test]
    fn currencies_are_known() {
        assert_eq!(Currency::from_code("XXX").unwrap_err().code(), "UNKNOWN_CURRENCY");
        assert_eq!(Currency::from_code("JPY").unwrap().scale(), 0);
    }

    /// A currency's amount patterns (what the OpenAPI documents say) accept exactly what the
    /// code does, sign, scale, size and form alike.
    #[test]
    fn amount_patterns_accept_what_the_code_accepts() {
        use proptest::prelude::*;
        let texts = (any::<bool>(), "0{0,2}[0-9]{0,12}", proptest::option::of("[0-9]{0,10}")).prop_map(
            |(negative, int, fraction)| {
                let sign = if negative { "-" } else { "" };
                match fraction {
                    Some(f) => format!("{sign}{int}.{f}"),
                    None => format!("{sign}{int}"),
                }
            },
        );
        let edges = proptest::sample::select(vec![
            "0",
            "-0",
            "0.00",
            "1000",
            "1000.0",
            "1000.00000001",
            "100000000",
            "100000000.01",
            "99999999.99",
            "0.01",
            "0.001",
            "0.10000000",
            "0.000000001",
            "10.000",
            "01",
            "1.",
            ".5",
            "-0.01",
            "10000000000",
            "999999999999",
            "1000000000000",
        ])
        .prop_map(str::to_owned);
        let mut runner = proptest::test_runner::TestRunner::default();
        let patterns: Vec<(Currency, regex::Regex, regex::Regex)> = CURRENCIES
            .iter()
            .map(|c| {
                let compile = |sign| regex::Regex::new(&c.amount_pattern(sign)).unwrap();
                (*c, compile(AmountSign::Positive), compile(AmountSign::Any))
            })
            .collect();
        let generic = regex::Regex::new(AMOUNT_PATTERN).unwrap();
        runner
            .run(&prop_oneof![texts, edges], |text| {
                let parsed = parse_amount(&text);
                prop_assert!(!generic.is_match(&text) || parsed.is_ok(), "form of {}", text);
                for (currency, positive, any) in &patterns {
                    let code = |f: fn(Decimal, Currency) -> Result<Money, MoneyError>| {
                        parsed.as_ref().ok().is_some_and(|d| f(*d, *currency).is_ok())
                    };
                    prop_assert_eq!(
                        positive.is_match(&text),
                        code(Money::positive),
                        "{} {} positive",
                        text,
                        currency.code
                    );
                    prop_assert_eq!(any.is_match(&text), code(Money::signed), "{} {} signed", text, currency.code);
                }
                Ok(())
            })
            .unwrap();
    }
}
