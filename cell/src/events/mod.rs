//! The outbox: every event is written in the same store transaction as the state change that
//! caused it, under a versionstamped key, so the log's order is commit order and a reader's cursor
//! (the key's 12-byte versionstamp) is stable across restarts. Consumers read pages after a cursor
//! and keep their own cursor: at-least-once delivery, deduplicated by the envelope's `id`.
//!
//! An outbox value is one of:
//! - the event's JSON text (a JSON object starts with `{`): events outside the audit chain, such
//!   as a registration;
//! - [`IN_CHAIN`] and a big-endian `u64`: the position of the audit record that holds the event's
//!   JSON, written in the same transaction. The wallet's events are chained, and storing their
//!   text once instead of twice takes about a fifth off the bytes each wallet operation writes;
//! - MessagePack with named fields, in a store written before events were stored as JSON (no
//!   MessagePack map starts with `{` or [`IN_CHAIN`]).

use crate::audit;
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
    /// The operator token's id and role, on a back-office request.
    pub operator: Option<contracts::operators::OperatorRef>,
}

impl EventContext {
    /// The context of a cell's own background work (a sweeper, a screening): a trace of its own.
    pub fn background(cell: &str) -> EventContext {
        EventContext { cell: cell.to_owned(), trace_id: hex::encode(rand::random::<[u8; 16]>()), operator: None }
    }
}

/// A UUIDv7 of instant `at`: time-ordered, with its random part from the thread's generator
/// rather than a system call per event (this is on the wallet's hot path).
fn event_id(at: chrono::DateTime<chrono::Utc>) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random::<[u8; 10]>()).into_uuid().to_string()
}

/// Builds the envelope for `payload`, stamped `at` (the time its cause was applied, from the
/// domain's clock) with a fresh UUIDv7 id.
pub fn envelope<P: EventPayload>(ctx: &EventContext, payload: P, at: chrono::DateTime<chrono::Utc>) -> Envelope<P> {
    Envelope {
        event: P::NAME.to_owned(),
        v: P::VERSION.to_owned(),
        id: event_id(at),
        ts: at,
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
    tx.set_versionstamped_key(&next_key(order), json.as_bytes())
}

/// Appends an event already appended to the audit chain, at position `record`, in the same `tx`:
/// the outbox keeps only that position. `order` as for [`append`].
pub fn append_chained(tx: &mut dyn Transaction, order: u16, record: u64) -> Result<(), StoreError> {
    let mut value = [IN_CHAIN; 9];
    value[1..].copy_from_slice(&record.to_be_bytes());
    tx.set_versionstamped_key(&next_key(order), &value)
}

/// The key of the next event of a transaction: its commit's versionstamp, then `order`.
fn next_key(order: u16) -> Vec<u8> {
    subspaces::events().pack_with_versionstamp(&Versionstamp::incomplete(order))
}

/// The first byte of an outbox value that points at an audit record (see the module's comment).
pub const IN_CHAIN: u8 = 0x01;

/// What an outbox value holds: the audit record's position, or the envelope's text.
enum Stored<'a> {
    InChain(u64),
    Text(&'a [u8]),
}

fn stored(value: &[u8]) -> Result<Stored<'_>, String> {
    if value.first() != Some(&IN_CHAIN) {
        return Ok(Stored::Text(value));
    }
    let position = <[u8; 8]>::try_from(&value[1..])
        .map_err(|_| format!("a chained event's value has {} bytes, not 9", value.len()))?;
    Ok(Stored::InChain(u64::from_be_bytes(position)))
}

/// An envelope stored as text: JSON, or MessagePack with named fields (see the module's comment).
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

/// Which events a page holds: those strictly between two cursors (either bound open), read from
/// the oldest end or, `newest_first`, from the newest.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageFrom<'a> {
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
    pub newest_first: bool,
}

/// The key of the event at `cursor`.
fn cursor_key(space: &foundationdb_tuple::Subspace, cursor: &str) -> Result<Vec<u8>, ReadError> {
    let stamp = parse_cursor(cursor)?;
    let vs =
        Versionstamp::complete(stamp[..10].try_into().expect("10 bytes"), u16::from_be_bytes([stamp[10], stamp[11]]));
    Ok(space.pack(&vs))
}

/// Up to `limit` events of the window `from`, with the cursor to continue from.
pub fn read_page(store: &dyn Store, from: PageFrom<'_>, limit: usize) -> Result<EventPage, ReadError> {
    let space = subspaces::events();
    let (start, end) = space.range();
    let begin = match from.after {
        // The first key after the cursor's own.
        Some(cursor) => {
            let mut key = cursor_key(&space, cursor)?;
            key.push(0);
            key
        }
        None => start,
    };
    // The range's end is exclusive: the cursor's own event is not read again.
    let end = match from.before {
        Some(cursor) => cursor_key(&space, cursor)?,
        None => end,
    };
    let (reverse, given) = if from.newest_first { (true, from.before) } else { (false, from.after) };
    if begin >= end {
        return Ok(EventPage { events: Vec::new(), next: given.map(str::to_owned) });
    }
    // Read-only: nothing to check at commit.
    let mut tx = store.begin_snapshot_reads()?;
    let rows = tx.get_range(&begin, &end, limit.clamp(1, PAGE_EVENTS_MAX), reverse)?;
    let mut page = Vec::with_capacity(rows.len());
    for (key, value) in &rows {
        let vs: Versionstamp =
            space.unpack(key).map_err(|e| ReadError::Corrupt { cursor: hex::encode(key), message: e.to_string() })?;
        let cursor = hex::encode(vs.as_bytes());
        let value = stored(value).map_err(|message| ReadError::Corrupt { cursor: cursor.clone(), message })?;
        page.push((cursor, value));
    }
    let positions: Vec<u64> =
        page.iter().filter_map(|(_, v)| if let Stored::InChain(p) = v { Some(*p) } else { None }).collect();
    let mut chained = audit::record_events(tx.as_mut(), &positions)?;
    let mut events = Vec::with_capacity(page.len());
    for (cursor, value) in page {
        let envelope = match value {
            Stored::Text(text) => decode(text),
            Stored::InChain(position) => chained
                .remove(&position)
                .unwrap_or_else(|| Err(format!("audit record {position} is listed twice in the outbox")))
                .and_then(|json| decode(json.as_bytes())),
        };
        let envelope = envelope.map_err(|message| ReadError::Corrupt { cursor: cursor.clone(), message })?;
        events.push(EventRecord { cursor, envelope });
    }
    let next = events.last().map(|e| e.cursor.clone()).or_else(|| given.map(str::to_owned));
    Ok(EventPage { events, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::events::WalletCredited;
    use contracts::wallet::MovementReason;
    use contracts::{Amount, Currency, PlayerId};

    fn envelope() -> Envelope<WalletCredited> {
        let ctx = EventContext { cell: "uk".into(), trace_id: "t1".into(), operator: None };
        let payload = WalletCredited {
            player_id: PlayerId::new("uk-p1").unwrap(),
            currency: Currency::from_code("GBP").unwrap(),
            amount: Amount::at_scale(rust_decimal::Decimal::new(7, 0), 2),
            reason: MovementReason::Deposit,
            entry_id: "3".into(),
            operator: None,
        };
        super::envelope(&ctx, payload, chrono::DateTime::UNIX_EPOCH)
    }

    #[test]
    fn an_event_stored_as_json_reads_back_as_it_was() {
        let envelope = envelope();
        let stored = decode(encode(&envelope).as_bytes()).unwrap();
        let Envelope { event, v, id, ts, trace_id, cell, payload } = envelope;
        let payload = serde_json::to_value(payload).unwrap();
        assert_eq!(stored, Envelope { event, v, id, ts, trace_id, cell, payload });
        assert_eq!(stored.payload["amount"], "7.00");
    }

    fn store() -> (tempfile::TempDir, crate::store::embedded::EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::embedded::EmbeddedStore::open(dir.path(), crate::store::embedded::Durability::GroupSync)
                .unwrap();
        (dir, store)
    }

    /// Commits what `write` does in one transaction.
    fn commit(store: &dyn Store, write: impl FnOnce(&mut dyn Transaction)) {
        let mut tx = store.begin().unwrap();
        write(tx.as_mut());
        tx.commit().unwrap();
    }

    fn stored_values(store: &dyn Store) -> Vec<Vec<u8>> {
        let (begin, end) = subspaces::events().range();
        store.begin().unwrap().get_range(&begin, &end, 100, false).unwrap().into_iter().map(|(_, v)| v).collect()
    }

    fn pointer(position: u8) -> [u8; 9] {
        [IN_CHAIN, 0, 0, 0, 0, 0, 0, 0, position]
    }

    #[test]
    fn chained_events_read_back_from_their_own_audit_records_beside_plain_ones() {
        let (_dir, store) = store();
        let texts: Vec<String> = (0..5).map(|_| encode(&envelope())).collect();
        let mut chain = audit::AuditChain::default();
        // As a store written before events were stored once: the text in both places (record 1).
        commit(&store, |tx| {
            append(tx, 0, &texts[0]).unwrap();
            chain.append(tx, texts[0].clone()).unwrap();
            chain.write_head(tx).unwrap();
        });
        commit(&store, |tx| {
            let second = chain.append(tx, texts[1].clone()).unwrap();
            append_chained(tx, 0, second).unwrap();
            append(tx, 1, &texts[2]).unwrap(); // outside the chain, as a registration is
            let third = chain.append(tx, texts[3].clone()).unwrap();
            append_chained(tx, 2, third).unwrap();
            chain.write_head(tx).unwrap();
        });
        commit(&store, |tx| {
            let fourth = chain.append(tx, texts[4].clone()).unwrap();
            append_chained(tx, 0, fourth).unwrap();
            chain.write_head(tx).unwrap();
        });

        let page = read_page(&store, PageFrom::default(), 10).unwrap();
        let read: Vec<_> = page.events.iter().map(|e| e.envelope.clone()).collect();
        let written: Vec<_> = texts.iter().map(|t| decode(t.as_bytes()).unwrap()).collect();
        assert_eq!(read, written, "each event once, in commit order, each from its own record");
        let values = stored_values(&store);
        assert_eq!(values[0], texts[0].as_bytes());
        assert_eq!(values[1], pointer(2));
        assert_eq!(values[2], texts[2].as_bytes(), "an event outside the chain keeps its text");
        assert_eq!(values[3], pointer(3));
        assert_eq!(values[4], pointer(4));
        // A page that starts between them reads the same events.
        let rest =
            read_page(&store, PageFrom { after: Some(&page.events[1].cursor), ..PageFrom::default() }, 10).unwrap();
        assert_eq!(rest.events.iter().map(|e| e.envelope.clone()).collect::<Vec<_>>(), written[2..]);
    }

    fn corrupt(store: &dyn Store) -> (String, String) {
        match read_page(store, PageFrom::default(), 10) {
            Err(ReadError::Corrupt { cursor, message }) => (cursor, message),
            other => panic!("expected a corrupt event, got {other:?}"),
        }
    }

    #[test]
    fn a_chained_event_whose_record_is_missing_is_corrupt_at_its_cursor() {
        let (_dir, store) = store();
        commit(&store, |tx| append_chained(tx, 0, 7).unwrap());
        let (cursor, message) = corrupt(&store);
        assert_eq!(cursor.len(), 24);
        assert!(message.contains("audit record 7 is missing"), "{message}");
    }

    #[test]
    fn a_chained_event_whose_record_was_changed_is_not_served() {
        let (_dir, store) = store();
        let mut chain = audit::AuditChain::default();
        commit(&store, |tx| {
            let first = chain.append(tx, encode(&envelope())).unwrap();
            append_chained(tx, 0, first).unwrap();
            chain.write_head(tx).unwrap();
        });
        assert_eq!(read_page(&store, PageFrom::default(), 10).unwrap().events[0].envelope.payload["amount"], "7.00");
        let record = subspaces::audit().pack(&("rec", 1u64));
        commit(&store, |tx| {
            let value = tx.get(&record).unwrap().unwrap();
            let at = value.windows(4).position(|w| w == b"7.00").unwrap();
            let mut changed = value.clone();
            changed[at..at + 4].copy_from_slice(b"9.00");
            tx.set(&record, &changed).unwrap();
        });
        let (_, message) = corrupt(&store);
        assert!(message.contains("audit record 1 does not match its hash"), "{message}");
    }

    #[test]
    fn an_outbox_value_that_is_no_event_is_corrupt() {
        for bad in [&[IN_CHAIN, 0, 1][..], &[IN_CHAIN; 10][..]] {
            let (_dir, store) = store();
            commit(&store, |tx| tx.set_versionstamped_key(&next_key(0), bad).unwrap());
            let (_, message) = corrupt(&store);
            assert!(message.contains("not 9"), "{message}");
        }
        let (_dir, store) = store();
        commit(&store, |tx| {
            append_chained(tx, 0, 1).unwrap();
            append_chained(tx, 1, 1).unwrap();
            let mut chain = audit::AuditChain::default();
            chain.append(tx, encode(&envelope())).unwrap();
        });
        let (_, message) = corrupt(&store);
        assert!(message.contains("listed twice"), "{message}");
    }

    #[test]
    fn an_event_stored_as_messagepack_before_still_reads() {
        let envelope = envelope();
        let mut legacy = Vec::new();
        rmp_serde::encode::write_named(&mut legacy, &envelope).unwrap();
        assert_eq!(decode(&legacy).unwrap(), decode(encode(&envelope).as_bytes()).unwrap());
    }
}
