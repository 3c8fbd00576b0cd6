//! Sync frames on the wire: a 4-byte big-endian length, then a MessagePack map
//! `{v: PROTOCOL_VERSION, msg: Message}`. A frame longer than [`FRAME_BYTES_MAX`] is refused
//! before a byte of it is buffered; one that does not decode, or speaks another version, is
//! refused without anything in it being used.

use contracts::changes::{Change, ChangeRecord};
use serde::{Deserialize, Serialize};

/// Version of the sync protocol. A peer speaking another version is refused with
/// `UNSUPPORTED_VERSION`; bump it with any change to [`Message`].
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest frame either side accepts, in bytes. The control API refuses request bodies over
/// 256 kB, so one change record is far smaller; batches and snapshot chunks are split to fit.
pub const FRAME_BYTES_MAX: usize = 1024 * 1024;

/// Everything either side says, in order:
///
/// ```text
/// cell                                  control plane
/// Hello {cell, appliedVersion}   ->
///                                <-     Snapshot {version, changes, last}...   (version 0, too far behind, or ahead)
///                                <-     Records [...]                           (the changes since, then each new one)
/// Ack {version}                  ->     (after each applied set)
///                                <-     Heartbeat {version}                     (every second: "still here, at v")
///                                <-     Refused {code, message}                 (then the connection closes)
///
/// A replicated primary renewing its lease, on a connection of its own:
/// Lease {cell, epoch, writer}    ->
///                                <-     LeaseGranted {epoch, raised} | LeaseRefused {code, message, epoch}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Message {
    #[serde(rename_all = "camelCase")]
    Hello {
        cell: String,
        applied_version: u64,
        /// Digest of the record at `applied_version`, when the cell kept it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        applied_digest: Option<String>,
    },
    /// One chunk of a snapshot: the full state at `version`. Applied as one set once `last`.
    #[serde(rename_all = "camelCase")]
    Snapshot {
        version: u64,
        changes: Vec<Change>,
        last: bool,
        /// Digest of the record at `version` (none at version 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
    },
    /// Consecutive change records, oldest first.
    #[serde(rename_all = "camelCase")]
    Records { records: Vec<ChangeRecord> },
    #[serde(rename_all = "camelCase")]
    Ack { version: u64 },
    #[serde(rename_all = "camelCase")]
    Heartbeat { version: u64 },
    #[serde(rename_all = "camelCase")]
    Refused { code: String, message: String },
    /// A primary asks the control plane to confirm that it writes for `cell` at `epoch`;
    /// `writer` names its data (two stores promoted to one epoch are told apart).
    #[serde(rename_all = "camelCase")]
    Lease { cell: String, epoch: u64, writer: String },
    /// Confirmed; `raised` when this request recorded a higher epoch than the control plane had.
    #[serde(rename_all = "camelCase")]
    LeaseGranted { epoch: u64, raised: bool },
    /// Not confirmed: `SUPERSEDED` (a higher epoch writes: this one is deposed) or
    /// `DOUBLE_PRIMARY` (another store writes at this epoch); `epoch` is the one recorded.
    #[serde(rename_all = "camelCase")]
    LeaseRefused { code: String, message: String, epoch: u64 },
}

#[derive(Serialize)]
struct FrameOut<'a, M> {
    v: u16,
    msg: &'a M,
}

#[derive(Deserialize)]
struct FrameHeader {
    v: u16,
}

#[derive(Deserialize)]
struct FrameIn<M> {
    msg: M,
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {bytes} bytes is over the limit")]
    TooLarge { bytes: usize },
    #[error("frame does not decode: {0}")]
    Malformed(String),
    #[error("frame speaks another protocol version ({0})")]
    UnsupportedVersion(u16),
    #[error("stream: {0}")]
    Stream(String),
    /// The peer finished its side cleanly between frames.
    #[error("stream finished")]
    Finished,
}

impl FrameError {
    /// Stable code for logs and `Refused` messages.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "FRAME_TOO_LARGE",
            FrameError::Malformed(_) => "FRAME_MALFORMED",
            FrameError::UnsupportedVersion(_) => "UNSUPPORTED_VERSION",
            FrameError::Stream(_) => "STREAM_ERROR",
            FrameError::Finished => "STREAM_FINISHED",
        }
    }
}

/// The frame bytes of `msg`, length prefix included.
pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    encode_as(PROTOCOL_VERSION, FRAME_BYTES_MAX, msg)
}

/// The frame bytes of any protocol's message `msg` at protocol `version` (log shipping frames
/// the same way).
pub fn encode_as<M: Serialize>(version: u16, max: usize, msg: &M) -> Result<Vec<u8>, FrameError> {
    let body = rmp_serde::to_vec_named(&FrameOut { v: version, msg })
        .map_err(|e| FrameError::Malformed(format!("encode: {e}")))?;
    if body.len() > max {
        return Err(FrameError::TooLarge { bytes: body.len() });
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes a frame body (after its length prefix).
pub fn decode(body: &[u8]) -> Result<Message, FrameError> {
    decode_as(PROTOCOL_VERSION, body)
}

/// Decodes a frame body of a protocol at `version`.
pub fn decode_as<M: serde::de::DeserializeOwned>(version: u16, body: &[u8]) -> Result<M, FrameError> {
    let header: FrameHeader = rmp_serde::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if header.v != version {
        return Err(FrameError::UnsupportedVersion(header.v));
    }
    let frame: FrameIn<M> = rmp_serde::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(frame.msg)
}

/// Reads one frame. The length is checked before the body is read, so an oversized frame costs
/// four bytes of memory.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Message, FrameError> {
    read_frame_as(PROTOCOL_VERSION, FRAME_BYTES_MAX, recv).await
}

/// Reads one frame of a protocol at `version`.
pub async fn read_frame_as<M: serde::de::DeserializeOwned>(
    version: u16,
    max: usize,
    recv: &mut quinn::RecvStream,
) -> Result<M, FrameError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(FrameError::Finished),
        Err(e) => return Err(FrameError::Stream(e.to_string())),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { bytes: len });
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| FrameError::Stream(e.to_string()))?;
    decode_as(version, &body)
}

pub async fn write_frame(send: &mut quinn::SendStream, msg: &Message) -> Result<(), FrameError> {
    let frame = encode(msg)?;
    send.write_all(&frame).await.map_err(|e| FrameError::Stream(e.to_string()))
}

/// Encodes `records` as one or more `Records` frames, each within [`FRAME_BYTES_MAX`]: a batch
/// too large is split in halves. A single record over the limit cannot be sent at all.
pub fn encode_records(records: &[ChangeRecord], out: &mut Vec<Vec<u8>>) -> Result<(), FrameError> {
    if records.is_empty() {
        return Ok(());
    }
    match encode(&Message::Records { records: records.to_vec() }) {
        Ok(frame) => {
            out.push(frame);
            Ok(())
        }
        Err(FrameError::TooLarge { .. }) if records.len() > 1 => {
            let (a, b) = records.split_at(records.len() / 2);
            encode_records(a, out)?;
            encode_records(b, out)
        }
        Err(e) => Err(e),
    }
}

/// Encodes a snapshot of the state at `version` as `Snapshot` frames within the limit, the last
/// one marked. An empty state is one empty, last chunk.
pub fn encode_snapshot(
    version: u64,
    digest: Option<&str>,
    changes: &[Change],
    out: &mut Vec<Vec<u8>>,
) -> Result<(), FrameError> {
    let digest = digest.map(str::to_owned);
    /// Changes per chunk to start with; halved while a chunk is too large.
    const SNAPSHOT_CHUNK_CHANGES: usize = 512;
    if changes.is_empty() {
        out.push(encode(&Message::Snapshot { version, changes: Vec::new(), last: true, digest })?);
        return Ok(());
    }
    let mut start = 0;
    let mut size = SNAPSHOT_CHUNK_CHANGES;
    while start < changes.len() {
        let end = (start + size).min(changes.len());
        let msg = Message::Snapshot {
            version,
            changes: changes[start..end].to_vec(),
            last: end == changes.len(),
            digest: digest.clone(),
        };
        match encode(&msg) {
            Ok(frame) => {
                out.push(frame);
                start = end;
            }
            Err(FrameError::TooLarge { .. }) if size > 1 => size /= 2,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let msg = Message::Hello { cell: "uk".into(), applied_version: 42, applied_digest: Some("ab".into()) };
        let frame = encode(&msg).unwrap();
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
        assert_eq!(decode(&frame[4..]).unwrap(), msg);
        assert!(matches!(decode(b"\xc1garbage"), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(&frame[4..frame.len() - 1]), Err(FrameError::Malformed(_))));
        let other = rmp_serde::to_vec_named(&FrameOut { v: PROTOCOL_VERSION + 1, msg: &msg }).unwrap();
        assert!(matches!(decode(&other), Err(FrameError::UnsupportedVersion(v)) if v == PROTOCOL_VERSION + 1));
        let huge = Message::Refused { code: "X".into(), message: "x".repeat(FRAME_BYTES_MAX) };
        assert!(matches!(encode(&huge), Err(FrameError::TooLarge { .. })));
    }
}
