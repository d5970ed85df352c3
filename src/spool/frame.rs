//! The on-disk form of one hook event: a frame of `len: u32 LE`, `crc32: u32 LE` (of the
//! body) and the body. The checksum is what lets a reader tell a record torn by a crash,
//! or damaged on disk, from a good one.
//!
//! Body, all integers little-endian: hook u8, qos u8, ts_ms u64, reason u8 (0 = none,
//! else `Reason::code`), then client id, username and `from` (u16 length each;
//! `from` absent is length 0xFFFF), topic (u16 length) and payload (u32 length), then
//! the peer address (u16 length) and the session sequence number (u64), which frames
//! written before they existed lack (the peer is written empty when absent but a
//! sequence number follows).

use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::hooks::{Hook, HookEvent, Reason};

pub const HEADER: usize = 8;
/// Largest frame body a writer produces: an MQTT packet is at most 256 MiB.
pub const MAX_BODY: usize = 256 * 1024 * 1024 + 64 * 1024;
const NO_FROM: u16 = u16::MAX;

/// Appends the frame of `event` to `out`.
pub fn encode(event: &HookEvent, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(event.hook.code() as u8);
    out.push(event.qos);
    out.extend_from_slice(&event.ts_ms.to_le_bytes());
    out.push(event.reason.map_or(0, Reason::code));
    short(out, event.client_id.as_bytes());
    short(out, event.username.as_bytes());
    match &event.from {
        Some(from) => short(out, from.as_bytes()),
        None => out.extend_from_slice(&NO_FROM.to_le_bytes()),
    }
    short(out, &event.topic);
    out.extend_from_slice(&(event.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&event.payload);
    if event.peer.is_some() || event.seq > 0 {
        short(out, event.peer.as_deref().unwrap_or("").as_bytes());
    }
    if event.seq > 0 {
        out.extend_from_slice(&event.seq.to_le_bytes());
    }
    let body_len = (out.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Client ids, usernames and topics are at most 65,535 bytes in MQTT; anything longer
/// (which the codecs never pass on) is cut rather than written with a wrong length.
fn short(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(NO_FROM as usize - 1);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&bytes[..len]);
}

/// What `check` found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// A whole, intact frame of this many bytes (header included).
    Good(usize),
    /// Not enough bytes yet for the whole frame.
    Incomplete,
    /// A plausible length whose body fails its checksum: skip this many bytes.
    BadChecksum(usize),
    /// A length no writer produces: the frame boundary is lost.
    BadLength,
}

pub fn check(buf: &[u8]) -> Check {
    if buf.len() < HEADER {
        return Check::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if !(16..=MAX_BODY).contains(&len) {
        return Check::BadLength;
    }
    if buf.len() < HEADER + len {
        return Check::Incomplete;
    }
    let crc = u32::from_le_bytes(buf[4..HEADER].try_into().expect("4 bytes"));
    match crc32fast::hash(&buf[HEADER..HEADER + len]) == crc {
        true => Check::Good(HEADER + len),
        false => Check::BadChecksum(HEADER + len),
    }
}

/// Decodes the body of a frame that passed `check`; topic and payload share `body`'s
/// memory. `None` if the body's own lengths are inconsistent.
pub fn decode(mut body: Bytes) -> Option<HookEvent> {
    if body.remaining() < 11 {
        return None;
    }
    let hook = *Hook::ALL.get(body.get_u8() as usize)?;
    let qos = body.get_u8();
    let ts_ms = body.get_u64_le();
    let reason = match body.get_u8() {
        0 => None,
        code => Some(Reason::from_code(code)?),
    };
    let client_id = text(&mut body)?;
    let username = text(&mut body)?;
    let from = match peek_u16(&body)? {
        NO_FROM => {
            body.advance(2);
            None
        }
        _ => Some(text(&mut body)?),
    };
    let topic_len = take_u16(&mut body)? as usize;
    let topic = take(&mut body, topic_len)?;
    if body.remaining() < 4 {
        return None;
    }
    let payload_len = body.get_u32_le() as usize;
    let payload = take(&mut body, payload_len)?;
    let peer = match body.has_remaining() {
        true => Some(text(&mut body)?).filter(|peer| !peer.is_empty()),
        false => None,
    };
    let seq = match body.remaining() {
        8.. => body.get_u64_le(),
        _ => 0,
    };
    Some(HookEvent { hook, ts_ms, client_id, username, topic, payload, qos, from, reason, peer, seq, record: None })
}

fn peek_u16(body: &Bytes) -> Option<u16> {
    Some(u16::from_le_bytes(body.get(0..2)?.try_into().ok()?))
}

fn take_u16(body: &mut Bytes) -> Option<u16> {
    let value = peek_u16(body)?;
    body.advance(2);
    Some(value)
}

fn take(body: &mut Bytes, len: usize) -> Option<Bytes> {
    (body.remaining() >= len).then(|| body.split_to(len))
}

fn text(body: &mut Bytes) -> Option<Arc<str>> {
    let len = take_u16(body)? as usize;
    let bytes = take(body, len)?;
    Some(String::from_utf8_lossy(&bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HookEvent {
        let mut event = HookEvent::new(Hook::MessageDelivered, "lock-1".into(), "user".into());
        event.topic = Bytes::from_static(b"devices/lock-1/command");
        event.payload = Bytes::from_static(b"{\"action\":\"unlock\"}\0\xff");
        event.qos = 1;
        event.from = Some("business-app-1".into());
        event.peer = Some("127.0.0.1:50123".into());
        event
    }

    #[test]
    fn an_event_round_trips() {
        // One sample: two would be stamped a millisecond apart now and then.
        let want = sample();
        let mut out = Vec::new();
        encode(&want, &mut out);
        let Check::Good(len) = check(&out) else { panic!("frame fails its own check") };
        assert_eq!(len, out.len());
        let got = decode(Bytes::copy_from_slice(&out[HEADER..])).expect("decodes");
        assert_eq!(
            (got.hook, got.ts_ms, &*got.client_id, &*got.username, &got.topic, &got.payload, got.qos, got.from.as_deref()),
            (want.hook, want.ts_ms, &*want.client_id, &*want.username, &want.topic, &want.payload, want.qos, want.from.as_deref())
        );
        assert_eq!(got.peer.as_deref(), Some("127.0.0.1:50123"));
        assert_eq!(got.seq, 0);
    }

    #[test]
    fn the_session_sequence_number_round_trips_with_or_without_a_peer() {
        for peer in [Some("127.0.0.1:50123"), None] {
            let mut event = sample();
            event.peer = peer.map(Arc::from);
            event.seq = 4_000_000_007;
            let mut out = Vec::new();
            encode(&event, &mut out);
            let got = decode(Bytes::copy_from_slice(&out[HEADER..])).expect("decodes");
            assert_eq!((got.peer.as_deref(), got.seq), (peer, 4_000_000_007));
        }
    }

    #[test]
    fn a_frame_written_before_peers_were_kept_still_decodes() {
        let mut event = sample();
        event.peer = None;
        let mut out = Vec::new();
        encode(&event, &mut out);
        let got = decode(Bytes::copy_from_slice(&out[HEADER..])).expect("decodes");
        assert_eq!((got.peer, got.from.as_deref()), (None, Some("business-app-1")));
    }

    #[test]
    fn every_reason_round_trips() {
        for reason in Reason::ALL {
            let mut event = HookEvent::new(Hook::ClientDisconnected, "c".into(), "".into());
            event.reason = Some(reason);
            let mut out = Vec::new();
            encode(&event, &mut out);
            assert_eq!(decode(Bytes::copy_from_slice(&out[HEADER..])).unwrap().reason, Some(reason));
        }
    }

    #[test]
    fn a_flipped_bit_or_a_torn_tail_is_detected() {
        let mut out = Vec::new();
        encode(&sample(), &mut out);
        let len = out.len();
        assert_eq!(check(&out[..len - 1]), Check::Incomplete);
        out[len - 3] ^= 0x10;
        assert_eq!(check(&out), Check::BadChecksum(len));
        out[3] = 0xff;
        assert_eq!(check(&out), Check::BadLength);
    }
}
