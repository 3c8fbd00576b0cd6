//! Money: a decimal amount in a known currency at that currency's scale. No float touches money.

use rust_decimal::Decimal;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A currency the platform can hold, with its number of minor-unit digits (ISO 4217 exponent; for
/// crypto, the unit the platform books in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    scale: u32,
}

/// Every currency the platform books. Adding one here is a contract change: it must be a real
/// ISO 4217 code (or a crypto ticker) with its real exponent.
const CURRENCIES: &[Currency] = &[
    Currency { code: "BTC", scale: 8 },
    Currency { code: "CHF", scale: 2 },
    Currency { code: "DKK", scale: 2 },
    Currency { code: "EUR", scale: 2 },
    Currency { code: "GBP", scale: 2 },
    Currency { code: "ISK", scale: 0 },
    Currency { code: "JPY", scale: 0 },
    Currency { code: "NOK", scale: 2 },
    Currency { code: "SEK", scale: 2 },
    Currency { code: "USD", scale: 2 },
];

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

/// Plain decimal notation only: an optional `-`, digits, an optional fraction. No exponent, no `+`,
/// no spaces, at most 28 significant digits (what `Decimal` holds exactly).
fn parse_amount(text: &str) -> Result<Decimal, String> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !well_formed {
        return Err(format!("`{text}` is not a decimal amount such as \"10.00\""));
    }
    Decimal::from_str_exact(text).map_err(|_| format!("`{text}` is out of range for an amount"))
}

impl JsonSchema for Amount {
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
            "description": "decimal amount as a string, at most the currency's scale, e.g. \"10.00\""
        })
    }
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
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    #[error("{amount} has more decimals than {currency} allows ({scale})")]
    TooManyDecimals { amount: Decimal, currency: &'static str, scale: u32 },
    #[error("{0} is negative where only a positive amount is allowed")]
    Negative(Decimal),
    #[error("amount must be greater than zero")]
    Zero,
}

impl MoneyError {
    /// The stable code an HTTP boundary answers with.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            MoneyError::TooManyDecimals { .. } => "AMOUNT_SCALE",
            MoneyError::Negative(_) => "AMOUNT_NEGATIVE",
            MoneyError::Zero => "AMOUNT_ZERO",
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
    /// Any sign, scale checked.
    pub fn signed(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount.normalize().scale() > currency.scale {
            return Err(MoneyError::TooManyDecimals { amount, currency: currency.code, scale: currency.scale });
        }
        Ok(Money { amount: amount.normalize(), currency })
    }

    /// Strictly positive, scale checked: what a deposit, stake or withdrawal must be.
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
    fn currencies_are_known() {
        assert_eq!(Currency::from_code("XXX").unwrap_err().code(), "UNKNOWN_CURRENCY");
        assert_eq!(Currency::from_code("JPY").unwrap().scale(), 0);
    }
}
