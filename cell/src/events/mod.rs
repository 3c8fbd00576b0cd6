//! The outbox: every event is written in the same store transaction as the state change that
//! caused it, under a versionstamped key, so the log's order is commit order and a reader's cursor
//! (the key's 12-byte versionstamp) is stable across restarts. Consumers read pages after a cursor
//! and keep their own cursor: at-least-once delivery, deduplicated by the envelope's `id`.

use crate::store::{subspaces, Store, StoreError, Transaction};
use contracts::events::{Envelope, EventPage, EventPayload, EventRecord};
use foundationdb_tuple::Versionstamp;

/// Most events one page returns: keeps one response and one store read bounded.
pub const PAGE_EVENTS_MAX: usize = 1_000;

/// Who is writing an event: carried into the envelope.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub cell: String,
    pub trace_id: String,
}

/// A UUIDv7: time-ordered, with its random part from the thread's generator rather than a system
/// call per event (this is on the wallet's hot path).
fn event_id() -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random::<[u8; 10]>()).into_uuid().to_string()
}

/// Builds the envelope for `payload`, stamped now with a fresh UUIDv7 id.
pub fn envelope<P: EventPayload>(ctx: &EventContext, payload: P) -> Envelope<P> {
    Envelope {
        event: P::NAME.to_owned(),
        v: P::VERSION.to_owned(),
        id: event_id(),
        ts: chrono::Utc::now(),
        trace_id: ctx.trace_id.clone(),
        cell: ctx.cell.clone(),
        payload,
    }
}

/// An envelope as stored and as the audit chain hashes it: its JSON text. One encoding serves
/// both, so the writer encodes each event once.
pub fn encode<P: EventPayload>(envelope: &Envelope<P>) -> String {
    let mut json = Vec::with_capacity(512);
    serde_json::to_writer(&mut json, envelope).expect("an event envelope always encodes");
    String::from_utf8(json).expect("JSON is UTF-8")
}

/// Appends an event (its [`encode`]d envelope) in `tx`. `order` distinguishes events of one
/// transaction (FoundationDB's user version): each must get its own.
pub fn append(tx: &mut dyn Transaction, order: u16, json: &str) -> Result<(), StoreError> {
    let key = subspaces::events().pack_with_versionstamp(&Versionstamp::incomplete(order));
    tx.set_versionstamped_key(&key, json.as_bytes())
}

/// A stored envelope: JSON, or MessagePack with named fields in a store written before events
/// were stored as JSON (a JSON object starts with `{`, which no MessagePack map does).
fn decode(value: &[u8]) -> Result<Envelope<serde_json::Value>, String> {
    if value.first() == Some(&b'{') {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    } else {
        rmp_serde::from_slice(value).map_err(|e| e.to_string())
    }
}

/// A cursor that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an event cursor (24 hex digits)")]
pub struct BadCursor(pub String);

fn parse_cursor(cursor: &str) -> Result<[u8; 12], BadCursor> {
    let bytes = hex::decode(cursor).map_err(|_| BadCursor(cursor.to_owned()))?;
    bytes.try_into().map_err(|_| BadCursor(cursor.to_owned()))
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Cursor(#[from] BadCursor),
    #[error("read events: {0}")]
    Store(#[from] StoreError),
    #[error("stored event at {cursor} does not decode: {message}")]
    Corrupt { cursor: String, message: String },
}

/// Up to `limit` events after `after` (from the start when `None`), in commit order.
pub fn read_page(store: &dyn Store, after: Option<&str>, limit: usize) -> Result<EventPage, ReadError> {
    let space = subspaces::events();
    let (start, end) = space.range();
    let begin = match after {
        Some(cursor) => {
            let stamp = parse_cursor(cursor)?;
            let vs = Versionstamp::complete(
                stamp[..10].try_into().expect("10 bytes"),
                u16::from_be_bytes([stamp[10], stamp[11]]),
            );
            // The first key after the cursor's own.
            let mut key = space.pack(&vs);
            key.push(0);
            key
        }
        None => start,
    };
    let mut tx = store.begin()?;
    let rows = tx.get_range(&begin, &end, limit.clamp(1, PAGE_EVENTS_MAX), false)?;
    let mut events = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let vs: Versionstamp =
            space.unpack(&key).map_err(|e| ReadError::Corrupt { cursor: hex::encode(&key), message: e.to_string() })?;
        let cursor = hex::encode(vs.as_bytes());
        let envelope = decode(&value).map_err(|message| ReadError::Corrupt { cursor: cursor.clone(), message })?;
        events.push(EventRecord { cursor, envelope });
    }
    let next = events.last().map(|e| e.cursor.clone()).or_else(|| after.map(str::to_owned));
    Ok(EventPage { events, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::events::WalletCredited;
    use contracts::wallet::MovementReason;
    use contracts::{Amount, Currency, PlayerId};

    fn envelope() -> Envelope<WalletCredited> {
        let ctx = EventContext { cell: "uk".into(), trace_id: "t1".into() };
        let payload = WalletCredited {
            player_id: PlayerId::new("uk-p1").unwrap(),
            currency: Currency::from_code("GBP").unwrap(),
            amount: Amount::at_scale(rust_decimal::Decimal::new(7, 0), 2),
            reason: MovementReason::Deposit,
            entry_id: "3".into(),
        };
        super::envelope(&ctx, payload)
    }

    #[test]
    fn an_event_stored_as_json_reads_back_as_it_was() {
        let envelope = envelope();
        let stored = decode(encode(&envelope).as_bytes()).unwrap();
        assert_eq!(stored, serde_json::from_str::<Envelope<serde_json::Value>>(&encode(&envelope)).unwrap());
        assert_eq!(stored.payload["amount"], "7.00");
    }

    #[test]
    fn an_event_stored_as_messagepack_before_still_reads() {
        let envelope = envelope();
        let mut legacy = Vec::new();
        rmp_serde::encode::write_named(&mut legacy, &envelope).unwrap();
        assert_eq!(decode(&legacy).unwrap(), decode(encode(&envelope).as_bytes()).unwrap());
    }
}
