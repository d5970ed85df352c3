//! Property tests of the edge's decode path (the envelope encoder's and the guest-output
//! parser's are unit tests in `src/envelope.rs` and `src/rules/abi/output.rs`): arbitrary and
//! mutated MQTT sessions, sent over TCP to a running gateway, never panic it, never
//! leave a connection hanging once the client has finished sending, and leave the
//! gateway serving other clients. `PROPTEST_CASES` sets the number of cases (`.ci/run`
//! sets it); inputs that once failed are replayed from `proptest-regressions/`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;

use crate::support::raw_mqtt::{connect, frame, RawClient};
use crate::support::scene::Scene;

const MAX_SIZE: usize = 512;
/// Threads of the gateway under test; a panic on one of them fails the property.
const GATEWAY_THREADS: &str = "properties-gateway";

static GATEWAY_PANICS: AtomicUsize = AtomicUsize::new(0);

/// One gateway for every case, on its own runtime, with a packet limit of `MAX_SIZE`.
fn gateway() -> &'static (tokio::runtime::Runtime, Scene) {
    static GATEWAY: OnceLock<(tokio::runtime::Runtime, Scene)> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(GATEWAY_THREADS) {
                GATEWAY_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info)
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(GATEWAY_THREADS)
            .enable_all()
            .build()
            .expect("runtime");
        let scene = runtime.block_on(Scene::start_with(&[], None, |config| {
            config.broker.max_packet_size = MAX_SIZE;
            config.broker.connect_timeout_ms = 2_000;
        }));
        (runtime, scene)
    })
}

/// Sends `bytes` as one client, then finishes sending; returns whether the gateway
/// closed the connection within `wait` (it must: nothing more can come).
fn session_ends(addr: SocketAddr, bytes: &[u8], wait: Duration) -> bool {
    let Ok(mut socket) = TcpStream::connect(addr) else { return false };
    let _ = socket.write_all(bytes);
    let _ = socket.shutdown(Shutdown::Write);
    socket.set_read_timeout(Some(wait)).expect("read timeout");
    let mut sink = [0u8; 1024];
    loop {
        match socket.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

/// The property for one byte stream: the session ends, nothing panicked, and a
/// well-behaved client is still served.
fn gateway_survives(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (runtime, scene) = gateway();
    prop_assert!(session_ends(scene.addr, bytes, Duration::from_secs(5)), "the gateway kept the connection open");
    prop_assert_eq!(GATEWAY_PANICS.load(Ordering::SeqCst), 0, "a gateway thread panicked");
    runtime.block_on(async {
        RawClient::connected(scene.addr, 5, "bystander").await.send(&crate::support::raw_mqtt::DISCONNECT).await;
    });
    Ok(())
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// One packet a client may send after CONNECT, well formed (before mutation), or one
/// only a server may send.
fn packet(level: u8) -> impl Strategy<Value = Vec<u8>> {
    let topic = proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'+'), Just(b'#'), Just(0xff), b'a'..=b'z'], 0..12);
    let publish =
        (topic.clone(), 0u8..=2, 1u16.., proptest::collection::vec(any::<u8>(), 0..64)).prop_map(move |(topic, qos, pkid, payload)| {
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
        });
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
    let session =
        (prop_oneof![Just(4u8), Just(5u8)], "[a-z]{0,8}", any::<u16>(), any::<bool>()).prop_flat_map(|(level, id, keep_alive, clean)| {
            proptest::collection::vec(packet(level), 0..6).prop_map(move |packets| {
                let mut bytes = connect(level, &id, clean, keep_alive);
                packets.iter().for_each(|p| bytes.extend_from_slice(p));
                bytes
            })
        });
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

proptest! {
    #[test]
    fn mutated_sessions_never_break_the_gateway(bytes in stream()) {
        gateway_survives(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_never_break_the_gateway(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        gateway_survives(&bytes)?;
    }
}

/// Inputs this property found, kept as regression tests.
#[test]
fn inputs_the_property_once_failed_on() {
    let cases: [&[u8]; 5] = [
        // A first packet of another type: refused at once.
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
        gateway_survives(bytes).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
    }
}
