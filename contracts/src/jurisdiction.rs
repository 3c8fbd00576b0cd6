//! Jurisdictions and the countries players connect from.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// A licensing jurisdiction: one cell (and optionally a standby) per jurisdiction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Jurisdiction {
    /// Great Britain, Gambling Commission (UKGC).
    #[serde(rename = "UK")]
    Uk,
    /// Malta Gaming Authority (MGA).
    #[serde(rename = "MT")]
    Mt,
    /// Denmark, Spillemyndigheden.
    #[serde(rename = "DK")]
    Dk,
    /// Sweden, Spelinspektionen.
    #[serde(rename = "SE")]
    Se,
    /// Spain, Dirección General de Ordenación del Juego (DGOJ).
    #[serde(rename = "ES")]
    Es,
}

impl Jurisdiction {
    /// Every jurisdiction, in the order the wire lists them.
    pub const ALL: [Jurisdiction; 5] =
        [Jurisdiction::Uk, Jurisdiction::Mt, Jurisdiction::Dk, Jurisdiction::Se, Jurisdiction::Es];
}

impl fmt::Display for Jurisdiction {
    /// Its code as the wire writes it (`UK`, `MT`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Jurisdiction::Uk => "UK",
            Jurisdiction::Mt => "MT",
            Jurisdiction::Dk => "DK",
            Jurisdiction::Se => "SE",
            Jurisdiction::Es => "ES",
        })
    }
}

/// ISO 3166-1 alpha-2 codes, officially assigned, in order (looked up by binary search: the router
/// checks the country of every request). A country outside this list is not a country.
const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
];

/// A country as ISO 3166-1 alpha-2, upper case (`GB`, `DK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn new(code: &str) -> Result<CountryCode, String> {
        let known = ISO_3166_ALPHA2.binary_search(&code).is_ok();
        if !known {
            return Err(format!("`{code}` is not an ISO 3166-1 alpha-2 country code"));
        }
        let b = code.as_bytes();
        Ok(CountryCode([b[0], b[1]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters of the list above.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl JsonSchema for CountryCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountryCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "enum": ISO_3166_ALPHA2.as_slice(), "description": "ISO 3166-1 alpha-2" })
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        CountryCode::new(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iso_list_is_in_order() {
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_jurisdiction_displays_as_the_wire_writes_it() {
        for j in [Jurisdiction::Uk, Jurisdiction::Mt, Jurisdiction::Dk, Jurisdiction::Se, Jurisdiction::Es] {
            assert_eq!(format!("\"{j}\""), serde_json::to_string(&j).unwrap());
        }
    }

    #[test]
    fn countries_are_checked() {
        assert!(CountryCode::new("GB").is_ok());
        assert!(CountryCode::new("UK").is_err(), "UK is not an ISO code; GB is");
        assert!(CountryCode::new("gb").is_err());
        assert_eq!(serde_json::to_string(&CountryCode::new("DK").unwrap()).unwrap(), "\"DK\"");
    }
}
