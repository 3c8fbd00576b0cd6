//! The parsers that read what outsiders send, driven by proptest where `cargo fuzz` would need a
//! nightly compiler: whatever the bytes, they answer (an operation or a refusal) and never panic.
//! Bodies are signed correctly, so the parsing behind the signature check is reached too.

use cell::domains::gaming::adapters::{parse, pulse_sign, seamless_sign};
use cell::domains::gaming::providers::Dialect;
use proptest::prelude::*;

const SECRET: &[u8] = b"fuzz-secret";

/// JSON-ish bodies: arbitrary bytes, arbitrary JSON values, and objects with the dialects' own
/// field names holding values of any type.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("transactionId"),
        Just("playerId"),
        Just("roundId"),
        Just("gameId"),
        Just("amount"),
        Just("currency"),
        Just("closeRound"),
        Just("refTransactionId"),
        Just("txId"),
        Just("customerId"),
        Just("roundRef"),
        Just("amountMinor"),
        Just("currencyCode"),
        Just("originalTxId"),
        Just("timestamp"),
    ];
    let value = prop_oneof![
        any::<String>().prop_map(serde_json::Value::String),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::Bool),
        Just(serde_json::Value::Null),
        "[0-9]{1,30}(\\.[0-9]{0,12})?".prop_map(serde_json::Value::String),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::btree_map(field, value, 0..10).prop_map(|m| {
            serde_json::to_vec(&m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<serde_json::Map<_, _>>())
                .unwrap()
        }),
    ]
}

fn call() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("bet"),
        Just("win"),
        Just("rollback"),
        Just("endRound"),
        Just("balance"),
        Just("debit"),
        Just("credit"),
        Just("cancel"),
        Just("getBalance"),
        Just("nope"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_dialects_answer_any_signed_body_without_panicking(body in body(), call in call()) {
        let now = chrono::Utc::now();
        // seamless-v1: the signature is over the timestamp and the raw body.
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-timestamp", now.timestamp().to_string().parse().unwrap());
        headers.insert("x-signature", seamless_sign(SECRET, now.timestamp(), &body).parse().unwrap());
        let _ = parse(Dialect::SeamlessV1, call, &headers, &body, SECRET, now);
        // pulse: the hash is inside the body, over its other fields.
        let signed = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(mut fields)) => {
                fields.insert("timestamp".into(), now.timestamp_millis().into());
                let hash = pulse_sign(&fields, SECRET);
                fields.insert("hash".into(), hash.into());
                serde_json::to_vec(&fields).unwrap()
            }
            _ => body.clone(),
        };
        let _ = parse(Dialect::Pulse, call, &axum::http::HeaderMap::new(), &signed, SECRET, now);
    }

    #[test]
    fn a_session_token_of_any_text_is_refused_without_panicking(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
        ]
    ) {
        let accepted = contracts::sessions::verify_token(&token, 0, |_, _, _| false);
        prop_assert!(accepted.is_err());
    }

    #[test]
    fn a_region_file_of_any_edit_loads_or_is_refused_without_panicking(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8)
    ) {
        let mut text = std::fs::read(crate::harness::region_path("uk")).unwrap();
        for (at, byte) in edits {
            let i = at.index(text.len());
            text[i] = byte;
        }
        let _ = contracts::region::RegionConfig::from_toml(&String::from_utf8_lossy(&text));
    }

    #[test]
    fn a_sync_frame_of_any_bytes_decodes_or_is_refused_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let _ = replication::sync::wire::decode(&bytes);
    }
}
