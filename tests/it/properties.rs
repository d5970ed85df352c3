//! Property tests of the packet observer's decode path (the envelope encoder's and the
//! guest-output parser's are unit tests in `src/envelope.rs` and `src/rules/abi.rs`):
//! arbitrary and mutated frames never panic the tap, and whatever it decodes is what
//! rumqttd's own codec decodes from the same bytes, apart from the tap's documented
//! guards (README, *Hostile input*). `PROPTEST_CASES` sets the number of cases (`.ci/run`
//! sets it); inputs that once failed are replayed from `proptest-regressions/`.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use hookline::access::Access;
use hookline::broker::{wire, PublisherIndex, TapCodec, TapShared};
use hookline::config::{AuthConfig, BufferConfig, Fsync};
use hookline::metrics::Metrics;
use hookline::spool::Spool;
use proptest::prelude::*;
use rumqttd::protocol::{self, v4::V4, v5::V5, Login, Packet, Protocol};

use crate::raw_mqtt::{connect, frame};

const MAX_SIZE: usize = 512;

/// A tap on its own connection. Every case appends to one spool (under cargo's
/// scratch directory for tests, emptied first), opened once: a spool per case would
/// cost a directory fsync each.
fn codec() -> TapCodec {
    static SHARED: OnceLock<Arc<TapShared>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        let metrics = Arc::new(Metrics::default());
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("properties-spool");
        let _ = std::fs::remove_dir_all(&dir);
        let config = BufferConfig { fsync: Fsync::Never, ..BufferConfig::default() };
        let (spool, _readers) = Spool::open(&config, &dir, 2, metrics.clone()).expect("spool");
        let access = Access::load(&AuthConfig { anonymous: true, ..AuthConfig::default() }).expect("anonymous access");
        Arc::new(TapShared::new(spool, PublisherIndex::new(64), metrics, access))
    });
    TapCodec::new(shared.clone())
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// One packet a client may send after CONNECT, well formed (before mutation), or one
/// only a server may send.
fn packet(level: u8) -> impl Strategy<Value = Vec<u8>> {
    let topic = proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'+'), Just(b'#'), Just(0xff), b'a'..=b'z'], 0..12);
    let publish = (topic.clone(), 0u8..=2, 1u16.., proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
        move |(topic, qos, pkid, payload)| {
            let mut body = Vec::new();
            string(&mut body, &topic);
            if qos > 0 {
                body.extend_from_slice(&pkid.to_be_bytes());
            }
            if level == 5 {
                body.push(0);
            }
            body.extend_from_slice(&payload);
            frame(0x30 | qos << 1, &body)
        },
    );
    let subscribe = (topic, 1u16..).prop_map(move |(filter, pkid)| {
        let mut body = pkid.to_be_bytes().to_vec();
        if level == 5 {
            body.push(0);
        }
        string(&mut body, &filter);
        body.push(1);
        frame(0x82, &body)
    });
    let puback = (1u16..).prop_map(|pkid| frame(0x40, &pkid.to_be_bytes()));
    let big = Just(frame(0x30, &[0u8; MAX_SIZE + 1]));
    let server_only = prop_oneof![Just(0x20u8), Just(0x90), Just(0xb0), Just(0xd0)].prop_map(|first| frame(first, &[0, 1, 0]));
    prop_oneof![4 => publish, 2 => subscribe, 1 => puback, 1 => Just(vec![0xc0, 0]), 1 => Just(vec![0xe0, 0]), 1 => big, 1 => server_only]
}

/// A connection's byte stream: CONNECT and packets, then bytes overwritten, a garbage
/// chunk inserted and the tail cut.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let session = (prop_oneof![Just(4u8), Just(5u8)], "[a-z]{0,8}", any::<u16>(), any::<bool>()).prop_flat_map(
        |(level, id, keep_alive, clean)| {
            proptest::collection::vec(packet(level), 0..6).prop_map(move |packets| {
                let mut bytes = connect(level, &id, clean, keep_alive);
                packets.iter().for_each(|p| bytes.extend_from_slice(p));
                bytes
            })
        },
    );
    let edits = (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..8))),
        proptest::option::of(any::<prop::sample::Index>()),
    );
    (session, edits).prop_map(|(mut bytes, (flips, insert, cut))| {
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Some((at, chunk)) = insert {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, chunk);
        }
        if let Some(at) = cut {
            bytes.truncate(at.index(bytes.len() + 1));
        }
        bytes
    })
}

/// What the tap changes in a CONNECT on purpose: an empty login where there is none (so
/// the gateway decides about anonymous clients), keep-alive 0 raised to the maximum.
fn as_tap_passes_it(mut packet: Packet) -> Packet {
    if let Packet::Connect(connect, _, _, _, login) = &mut packet {
        login.get_or_insert_with(|| Login { username: String::new(), password: String::new() });
        if connect.keep_alive == 0 {
            connect.keep_alive = u16::MAX;
        }
    }
    packet
}

/// QoS and packet id as rumqttd encodes its decoded publish (they are private fields).
fn reencoded_qos_pkid(packet: &Packet, v5: bool) -> Option<(u8, u16)> {
    let mut buffer = BytesMut::new();
    let written = if v5 { V5.write(packet.clone(), &mut buffer) } else { V4.write(packet.clone(), &mut buffer) };
    written.ok()?;
    wire::publish_qos_pkid(&buffer)
}

/// A topic name the tap refuses although rumqttd's decoder accepts it.
fn forbidden_topic(packet: &Packet) -> bool {
    match packet {
        Packet::Publish(publish, _) => wire::invalid_topic_name(&publish.topic).is_some(),
        Packet::Connect(_, _, Some(will), _, _) => wire::invalid_topic_name(&will.topic).is_some(),
        _ => false,
    }
}

/// The property: `bytes`, read packet by packet by the tap and by rumqttd's codec, give
/// the same packets and the same errors, apart from the tap's guards.
fn tap_agrees_with_rumqttd(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut tap = codec();
    let v5 = wire::connect_level(&bytes) == Some(5);
    let mut tap_stream = BytesMut::from(&bytes[..]);
    let mut rumqttd_stream = tap_stream.clone();
    let mut first = true;
    loop {
        let frame = tap_stream.clone();
        let tapped = tap.read_mut(&mut tap_stream, MAX_SIZE);
        let packet_type = frame.first().map(|&b| wire::packet_type(b));
        // rumqttd's own decoder may panic on these (see `wire::sent_only_by_servers`):
        // the tap refuses them from their first byte.
        if packet_type.is_some_and(wire::sent_only_by_servers) {
            prop_assert!(tapped.is_err() && !matches!(tapped, Err(protocol::Error::InsufficientBytes(_))), "{tapped:?}");
            break;
        }
        let reference = if v5 { V5.read_mut(&mut rumqttd_stream, MAX_SIZE) } else { V4.read_mut(&mut rumqttd_stream, MAX_SIZE) };
        let not_a_connect = packet_type.is_some_and(|kind| kind != wire::CONNECT);
        match (tapped, reference) {
            (Ok(tapped), Ok(reference)) => {
                if let Packet::Publish(..) = reference {
                    prop_assert_eq!(wire::publish_qos_pkid(&frame), reencoded_qos_pkid(&reference, v5));
                }
                prop_assert_eq!(tapped, as_tap_passes_it(reference));
                prop_assert_eq!(&tap_stream, &rumqttd_stream, "both consumed the same bytes");
            }
            // The tap's guard: a first packet that is no CONNECT is refused at once,
            // rumqttd would wait for all of it.
            (Err(_), _) if first && not_a_connect => break,
            (Err(protocol::Error::InsufficientBytes(_)), Err(protocol::Error::InsufficientBytes(_))) => break,
            (Err(tapped), Err(reference)) => {
                prop_assert!(!matches!(tapped, protocol::Error::InsufficientBytes(_)), "tap waits where rumqttd fails: {reference:?}");
                prop_assert!(!matches!(reference, protocol::Error::InsufficientBytes(_)), "tap fails ({tapped:?}) where rumqttd waits");
                break;
            }
            // The tap's guard: topic names MQTT forbids.
            (Err(protocol::Error::MalformedPacket), Ok(reference)) if forbidden_topic(&reference) => break,
            (tapped, reference) => prop_assert!(false, "tap {tapped:?} but rumqttd {reference:?}"),
        }
        first = false;
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_tap_decodes_what_rumqttd_decodes(bytes in stream()) {
        tap_agrees_with_rumqttd(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_tap(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut tap = codec();
        let mut stream = BytesMut::from(&bytes[..]);
        let mut first = true;
        while let Ok(packet) = tap.read_mut(&mut stream, MAX_SIZE) {
            prop_assert!(!first || matches!(packet, Packet::Connect(..)), "first packet {packet:?}");
            first = false;
        }
    }
}

/// Inputs this property found, kept as regression tests.
#[test]
fn inputs_the_property_once_failed_on() {
    let cases: [&[u8]; 5] = [
        // A first packet of another type: the tap refuses it at once.
        &[0x20, 12],
        // A CONNECT announcing 177 MB: refused from its fixed header, not waited for.
        &[0x10, 171, 233, 182, 84, 110, 12, 0, 4, b'M', b'Q', b'T', b'T'],
        // An UNSUBACK from an MQTT 5 client: rumqttd's decoder panics on it.
        &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0, 0, 1, 0, 0, 0, 0xb0, 2, 0, 1],
        // The first byte of a SUBACK: refused without waiting for more.
        &[0x90],
        // A PINGRESP with a malformed remaining length as the first packet.
        &[0xd0, 0x80, 0x80, 0x80, 0x80, 0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 0, 0, 0],
    ];
    for bytes in cases {
        tap_agrees_with_rumqttd(bytes).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
    }
}
