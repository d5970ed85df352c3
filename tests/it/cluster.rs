//! Gateways sharing one Kafka are one broker: a session moves between nodes with its
//! subscriptions and its undelivered messages, the node it leaves closes its old
//! connection (MQTT 5 DISCONNECT 0x8E), commands from Kafka reach a device on whichever
//! node it is, an MQTT publish on one node reaches a subscriber on another once, and a
//! retained message published on one node is sent to a new subscriber on another, and a
//! command produced the moment a SUBACK arrives from another node reaches its lock.
//! Two gateways in this process on librdkafka's mock cluster; `tests/cluster.sh`-style
//! runs with separate processes and tansu are in the platform tests.

use std::time::{Duration, Instant};

use crate::support::fixtures::downlink_rule;
use crate::support::raw_mqtt::{ack, connect_with, connect_with_will, parse_publish, prop_u32, subscribe, RawClient, Received};
use crate::support::scene::{produce, wait_for, Device, MockKafka, Scene};

async fn node(kafka: &MockKafka, name: &str) -> Scene {
    let rule = downlink_rule("device_commands");
    let name = name.to_string();
    Scene::start_with(&[("downlink.wat", rule.as_bytes())], Some(kafka.bootstrap()), move |config| config.node = name).await
}

/// An MQTT 5 lock with a 300 s session: connected, and whether the session was present.
async fn lock(scene: &Scene, client_id: &str, clean_start: bool) -> (RawClient, bool) {
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect_with(5, client_id, clean_start, &prop_u32(0x11, 300), None)).await;
    let (first, body) = client.receive().await.expect("CONNACK");
    assert_eq!((first, body.get(1)), (0x20, Some(&0)), "{client_id}: CONNACK accepting");
    (client, body[0] & 1 == 1)
}

/// The next PUBLISH to `client`, acknowledged (QoS 1). Waits up to 30 s: a command
/// waits for a node to take its partition (see `downlink::share`).
async fn command(client: &mut RawClient) -> Received {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.receive().await {
            Some(packet) => {
                if let Some(publish) = parse_publish(5, &packet) {
                    if publish.qos == 1 {
                        client.send(&ack(0x40, publish.pkid)).await;
                    }
                    return publish;
                }
            }
            None => assert!(Instant::now() < deadline, "no PUBLISH within 30 s"),
        }
    }
}

/// The next PUBLISH to `client` (acknowledged) that is not one of `seen`, which the
/// downlink may deliver again (at least once).
async fn command_after(client: &mut RawClient, seen: &[&[u8]]) -> Received {
    loop {
        let command = command(client).await;
        if !seen.contains(&&command.payload[..]) {
            return command;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_another_node_with_its_subscription_and_the_old_connection_is_closed() {
    let kafka = MockKafka::new(&["device_commands"]);
    let (a, b) = (node(&kafka, "node-a").await, node(&kafka, "node-b").await);

    let (mut on_a, present) = lock(&a, "lock-1", true).await;
    assert!(!present);
    on_a.send(&subscribe(5, 1, "devices/lock-1/command", 1)).await;
    assert_eq!(on_a.receive().await.map(|(first, _)| first), Some(0x90));
    produce(&kafka.bootstrap(), "device_commands", Some("lock-1"), "one");
    assert_eq!(command(&mut on_a).await.payload, b"one");

    // The lock lands on node B: its session is there, and node A lets go of it.
    let started = Instant::now();
    let (mut on_b, present) = lock(&b, "lock-1", false).await;
    let connack_at = started.elapsed();
    assert!(present, "the session stored in the cluster resumes on another node");
    let goodbye = on_a.receive().await.expect("node A says goodbye");
    let overlap = started.elapsed().saturating_sub(connack_at);
    assert_eq!((goodbye.0, goodbye.1.first()), (0xe0, Some(&0x8e)), "DISCONNECT 0x8E Session taken over");
    eprintln!("takeover: CONNACK on B after {connack_at:?}; the old connection closed {overlap:?} after it");
    assert!(wait_for(Duration::from_secs(5), || a.counter("cluster_takeovers") == 1).await);

    // Commands from Kafka follow the lock; so does an MQTT publish made on node A.
    produce(&kafka.bootstrap(), "device_commands", Some("lock-1"), "two");
    // At least once: "one" may come again, if its record was consumed again after the
    // downlink group's rebalance (node B joining: the records node A had done but not yet
    // committed) and so posted twice, or if its acknowledgement raced the takeover
    // (docs/cluster.md, "Claims and takeover").
    assert_eq!(command_after(&mut on_b, &[b"one"]).await.payload, b"two");
    let app = Device::connect(a.addr, "business-app").await;
    app.publish("devices/lock-1/command", "three", rumqttc::QoS::AtLeastOnce).await;
    let three = command_after(&mut on_b, &[b"one", b"two"]).await;
    assert_eq!((three.topic.as_str(), &three.payload[..]), ("devices/lock-1/command", &b"three"[..]));
    // Each session is served by one path (the router here, the mailbox for the others):
    // the MQTT publish arrives once. Downlink commands consumed again may still come.
    while let Some(again) = on_b.receive().await.and_then(|p| parse_publish(5, &p)) {
        assert_ne!(again.payload, b"three", "delivered once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_away_gets_its_commands_in_order_on_another_node_and_a_clean_start_drops_them() {
    let kafka = MockKafka::new(&["device_commands"]);
    let (a, b) = (node(&kafka, "node-a").await, node(&kafka, "node-b").await);

    let (mut on_a, _) = lock(&a, "lock-2", true).await;
    on_a.send(&subscribe(5, 1, "devices/lock-2/command", 1)).await;
    assert_eq!(on_a.receive().await.map(|(first, _)| first), Some(0x90));
    on_a.send(&[0xe0, 0]).await;
    drop(on_a);
    assert!(wait_for(Duration::from_secs(5), || a.counter("connections") == 0).await);

    for n in 1..=5 {
        produce(&kafka.bootstrap(), "device_commands", Some("lock-2"), &format!("command {n}"));
    }
    let done = || a.counter("downlink_done") + b.counter("downlink_done") == 5;
    // The first records wait for the downlink's consumer group to form.
    assert!(wait_for(Duration::from_secs(60), done).await, "every record done: in the away session's mailbox");

    let (mut on_b, present) = lock(&b, "lock-2", false).await;
    assert!(present);
    for n in 1..=5 {
        assert_eq!(String::from_utf8(command(&mut on_b).await.payload).unwrap(), format!("command {n}"));
    }
    on_b.send(&[0xe0, 0]).await;
    drop(on_b);

    // Clean Start on node A: the session starts empty, so a command finds nobody.
    produce(&kafka.bootstrap(), "device_commands", Some("lock-2"), "for the old session");
    let done = || a.counter("downlink_done") + b.counter("downlink_done") == 6;
    assert!(wait_for(Duration::from_secs(60), done).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut fresh, present) = lock(&a, "lock-2", true).await;
    assert!(!present);
    assert!(fresh.receive().await.is_none(), "nothing of the old session is delivered");
}

/// A new client on `node` subscribed to `doors/+/state`, its SUBACK read.
async fn door_viewer(node: &Scene, client_id: &str) -> RawClient {
    let (mut viewer, _) = lock(node, client_id, true).await;
    viewer.send(&subscribe(5, 1, "doors/+/state", 1)).await;
    assert_eq!(viewer.receive().await.map(|(first, _)| first), Some(0x90));
    viewer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_published_on_one_node_is_sent_to_a_subscriber_on_another() {
    let kafka = MockKafka::new(&[]);
    let (a, b) = (node(&kafka, "node-a").await, node(&kafka, "node-b").await);
    let publisher = Device::connect(a.addr, "door-panel").await;
    publisher.client.publish("doors/front/state", rumqttc::QoS::AtLeastOnce, true, "locked").await.unwrap();

    // A subscriber on node B gets it, retained, once the cluster has it.
    let mut got = None;
    for _ in 0..50 {
        let mut viewer = door_viewer(&b, "viewer").await;
        if let Some(publish) = viewer.receive().await.and_then(|p| parse_publish(5, &p)) {
            got = Some(publish);
            break;
        }
    }
    let retained = got.expect("the retained message on node B");
    assert_eq!((retained.topic.as_str(), &retained.payload[..], retained.retain), ("doors/front/state", &b"locked"[..], true));

    // An empty retained publish removes it, for every node.
    publisher.client.publish("doors/front/state", rumqttc::QoS::AtLeastOnce, true, "").await.unwrap();
    let mut removed = false;
    for _ in 0..50 {
        let mut viewer = door_viewer(&b, "viewer-2").await;
        if tokio::time::timeout(Duration::from_millis(300), viewer.receive()).await.is_err() {
            removed = true;
            break;
        }
    }
    assert!(removed, "the retained message was removed");
}

/// A delayed will of a client whose session outlives its connection is the session's:
/// fired after the delay by the node that keeps the session, and by the node that adopts
/// the session when that node stops first; once either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_fires_once_after_its_delay_even_when_its_node_stops_first() {
    let kafka = MockKafka::new(&[]);
    let (mut a, b) = (node(&kafka, "node-a").await, node(&kafka, "node-b").await);
    let (mut watcher, _) = lock(&b, "watcher", true).await;
    watcher.send(&subscribe(5, 1, "will/#", 1)).await;
    assert_eq!(watcher.receive().await.map(|(first, _)| first), Some(0x90));

    // Gone from node A, which keeps running: node A fires the will after 1 s.
    let mut phone = RawClient::open(a.addr).await;
    phone.send(&connect_with_will("phone", true, 300, "will/phone", 1)).await;
    assert_eq!(phone.receive().await.expect("CONNACK").1[1], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(phone);
    let will = watcher.receive().await.and_then(|p| parse_publish(5, &p)).expect("the will, on node B");
    assert_eq!(will.topic, "will/phone");

    // Gone from node A, which stops before the 3 s delay: node B adopts and fires it.
    let mut laptop = RawClient::open(a.addr).await;
    laptop.send(&connect_with_will("laptop", true, 300, "will/laptop", 3)).await;
    assert_eq!(laptop.receive().await.expect("CONNACK").1[1], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(laptop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.shutdown().await;
    let will = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(publish) = watcher.receive().await.and_then(|p| parse_publish(5, &p)) {
                return publish;
            }
        }
    })
    .await
    .expect("the will, fired by node B");
    assert_eq!(will.topic, "will/laptop");
    assert_eq!(b.counter("cluster_adopted"), 2, "both of node A's sessions");
    assert!(tokio::time::timeout(Duration::from_secs(4), watcher.receive()).await.is_err(), "each will fired once");
}

/// A command produced the moment its lock has the SUBACK reaches the lock, whichever node
/// consumes the command's partition: the SUBACK waits until Kafka has the subscription,
/// and the consuming node reads the sessions topic up to its end before it routes.
/// Half the locks are on the node that does not consume the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_produced_just_after_a_suback_on_either_node_reaches_its_lock() {
    const LOCKS: usize = 40;
    let kafka = MockKafka::new(&["device_commands"]);
    let nodes = [node(&kafka, "node-a").await, node(&kafka, "node-b").await];
    let producer: rdkafka::producer::FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka.bootstrap()).set("linger.ms", "0").create().unwrap();
    let mut delivered = 0;
    for i in 0..LOCKS {
        let id = format!("race-{i}");
        let (mut client, _) = lock(&nodes[i % 2], &id, true).await;
        client.send(&subscribe(5, 1, &format!("devices/{id}/command"), 1)).await;
        let (first, _) = client.receive().await.expect("SUBACK");
        assert_eq!(first, 0x90, "{id}: SUBACK");
        let payload = format!("unlock {i}");
        let record = rdkafka::producer::FutureRecord::to("device_commands").key(&id).payload(&payload);
        producer.send(record, Duration::from_secs(5)).await.expect("produced");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match client.receive().await.and_then(|packet| parse_publish(5, &packet)) {
                Some(command) if command.payload == payload.as_bytes() => {
                    delivered += 1;
                    break;
                }
                _ => {}
            }
        }
    }
    println!("commands produced just after a SUBACK: {delivered} of {LOCKS} delivered");
    assert_eq!(delivered, LOCKS);
}
