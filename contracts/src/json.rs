//! The JSON every process accepts: RFC 8259 text whose objects name each key once.
//!
//! `serde_json` keeps the last of two equal keys when it builds a `Value`, while other readers keep
//! the first: `{"amount":"1.00","amount":"1000.00"}` would mean one thing to the idempotency
//! fingerprint or a proxy and another to the handler. So a body with a repeated key is refused
//! (`MALFORMED_JSON` at every HTTP boundary), never resolved one way or the other.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};
use std::fmt;

/// Parses `bytes` as JSON, refusing any object that repeats a key (at any depth).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Builds a `Value` as `serde_json` does, except that a repeated key in an object is an error.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity, so this is always a number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("key `{key}` appears twice in one object")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        let err = parse_strict(br#"{"amount":"1.00","amount":"1000.00"}"#).unwrap_err();
        assert!(err.to_string().contains("`amount` appears twice"), "{err}");
        assert!(parse_strict(br#"{"a":[{"b":1,"b":2}]}"#).is_err());
        assert!(parse_strict(br#"{"a":{"b":1},"c":{"b":2}}"#).is_ok(), "the same key in two objects is fine");
    }

    #[test]
    fn it_reads_what_serde_json_reads() {
        let text = br#" {"s":"x\u00e9","n":-12,"u":18446744073709551615,"f":1.5,"t":true,"z":null,"a":[1,[2]]} "#;
        assert_eq!(parse_strict(text).unwrap(), serde_json::from_slice::<Value>(text).unwrap());
        for bad in [&b"{"[..], b"{} {}", b"[1,]", b"", b"nul"] {
            assert!(parse_strict(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
