//! The promises MQTT makes, kept by the edge, each checked on the wire with hand-built
//! MQTT 5 (and, where it applies, 3.1.1) packets: delivered QoS, topic aliases,
//! subscription options, overlapping subscriptions and their Subscription Identifiers,
//! shared subscriptions, the client's Receive Maximum and Maximum Packet Size, the
//! CONNACK's properties, keep-alive, a second CONNECT, takeover, will delay, `$`
//! filters, and the DISCONNECTs a server sends. The session and delivery promises are
//! checked twice: on a gateway alone, and on a cluster node (sessions kept in Kafka).

use std::time::Duration;

use crate::support::raw_mqtt::{
    ack, connect, connect_with, parse_publish, prop_u16, prop_u32, publish, subscribe, subscribe_with_id, subscription_ids, unsubscribe,
    RawClient, Received,
};
use crate::support::scene::{wait_for, MockKafka, Scene};

/// A connected client of MQTT `level` whose SUBSCRIBE of `filter` (options byte) is
/// granted.
async fn subscriber(scene: &Scene, level: u8, id: &str, filter: &str, options: u8) -> RawClient {
    let mut client = RawClient::connected(scene.addr, level, id).await;
    client.send(&subscribe(level, 1, filter, options)).await;
    let (first, body) = client.receive().await.expect("SUBACK");
    assert_eq!(first, 0x90, "{id}: SUBACK expected");
    assert!(*body.last().unwrap() < 0x80, "{id}: subscription to {filter} refused: {body:?}");
    client
}

/// The next PUBLISH to `client`, skipping nothing: another packet fails the test.
async fn next_publish(client: &mut RawClient, level: u8) -> Option<Received> {
    let packet = client.receive().await?;
    Some(parse_publish(level, &packet).unwrap_or_else(|| panic!("PUBLISH expected, got {packet:?}")))
}

/// Nothing arrives for half a second.
async fn silent(client: &mut RawClient) -> bool {
    tokio::time::timeout(Duration::from_millis(500), client.receive()).await.is_err()
}

/// Publishes and waits for the acknowledgement a QoS 1/2 publish gets.
async fn publish_acked(client: &mut RawClient, level: u8, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
    client.send(&publish(level, topic, qos, 7, retain, payload, &[])).await;
    if qos > 0 {
        let (first, _) = client.receive().await.expect("acknowledgement");
        assert_eq!(first >> 4, if qos == 1 { 4 } else { 5 });
    }
    if qos == 2 {
        client.send(&ack(0x62, 7)).await;
        assert_eq!(client.receive().await.expect("PUBCOMP").0, 0x70);
    }
}

async fn a_delivery_never_has_a_higher_qos_than_its_publish_or_its_subscription_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    deliveries_are_capped(&scene, "q/#", "q/x").await;
}

/// QoS 0, 1 and 2 publishes to `topic` reach a QoS 2 and a QoS 1 subscriber of `filter`
/// at min(published, granted), at both MQTT levels.
async fn deliveries_are_capped(scene: &Scene, filter: &str, topic: &str) {
    for level in [4, 5] {
        let mut qos2_sub = subscriber(scene, level, &format!("q2-{level}-{filter}"), filter, 2).await;
        let mut qos1_sub = subscriber(scene, level, &format!("q1-{level}-{filter}"), filter, 1).await;
        let mut publisher = RawClient::connected(scene.addr, level, &format!("pub-{level}-{filter}")).await;
        for (qos, to_qos2_sub, to_qos1_sub) in [(0, 0, 0), (1, 1, 1), (2, 2, 1)] {
            publish_acked(&mut publisher, level, topic, qos, false, b"m").await;
            let got = next_publish(&mut qos2_sub, level).await.expect("delivery");
            assert_eq!(got.qos, to_qos2_sub, "{filter}, MQTT level {level}: QoS {qos} publish to a QoS 2 subscription");
            let got_1 = next_publish(&mut qos1_sub, level).await.expect("delivery");
            assert_eq!(got_1.qos, to_qos1_sub, "{filter}, MQTT level {level}: QoS {qos} publish to a QoS 1 subscription");
            if got.qos == 1 {
                qos2_sub.send(&ack(0x40, got.pkid)).await;
            }
            if got.qos == 2 {
                qos2_sub.send(&ack(0x50, got.pkid)).await;
                assert_eq!(qos2_sub.receive().await.expect("PUBREL").0, 0x62);
                qos2_sub.send(&ack(0x70, got.pkid)).await;
            }
            if got_1.qos == 1 {
                qos1_sub.send(&ack(0x40, got_1.pkid)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_their_own_topic_and_client_topic_aliases_are_resolved() {
    let scene = Scene::start(&[], None).await;
    let mut sub = subscriber(&scene, 5, "alias-sub", "a/+", 0).await;
    let mut publisher = RawClient::connected(scene.addr, 5, "alias-pub").await;
    // Alias 1 set with a/y, then used alone; then a/z without an alias.
    publisher.send(&publish(5, "a/y", 0, 0, false, b"1", &prop_u16(0x23, 1))).await;
    publisher.send(&publish(5, "", 0, 0, false, b"2", &prop_u16(0x23, 1))).await;
    publisher.send(&publish(5, "a/z", 0, 0, false, b"3", &[])).await;
    for (topic, payload) in [("a/y", b"1"), ("a/y", b"2"), ("a/z", b"3")] {
        let got = next_publish(&mut sub, 5).await.expect("delivery");
        assert_eq!((got.topic.as_str(), &got.payload[..]), (topic, &payload[..]));
        assert!(!got.props.contains(&0x23), "the server sends no topic alias: {:?}", got.props);
    }
    // An alias over the CONNACK's Topic Alias Maximum (64) ends the connection.
    publisher.send(&publish(5, "a/y", 0, 0, false, b"x", &prop_u16(0x23, 65))).await;
    let (first, body) = publisher.receive().await.expect("DISCONNECT");
    assert_eq!((first, body[0]), (0xe0, 0x94), "DISCONNECT Topic Alias invalid");
}

async fn no_local_and_retain_as_published_and_retain_handling_are_honoured_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    let mut publisher = RawClient::connected(scene.addr, 5, "opt-pub").await;
    publish_acked(&mut publisher, 5, "r/old", 1, true, b"retained").await;

    // Retain Handling 0 sends the retained message, flagged retained; 2 never does.
    let mut rh0 = subscriber(&scene, 5, "rh0", "r/#", 0x01).await;
    let got = next_publish(&mut rh0, 5).await.expect("retained message");
    assert!(got.retain && got.payload == b"retained");
    rh0.send(&ack(0x40, got.pkid)).await;
    let mut rh2 = subscriber(&scene, 5, "rh2", "r/#", 0x21).await;
    assert!(silent(&mut rh2).await, "Retain Handling 2: no retained message");
    // Retain Handling 1: only when the subscription is new.
    let mut rh1 = subscriber(&scene, 5, "rh1", "r/#", 0x11).await;
    let got = next_publish(&mut rh1, 5).await.expect("retained message for a new subscription");
    rh1.send(&ack(0x40, got.pkid)).await;
    rh1.send(&subscribe(5, 2, "r/#", 0x11)).await;
    assert_eq!(rh1.receive().await.expect("SUBACK").0, 0x90);
    assert!(silent(&mut rh1).await, "Retain Handling 1: none for an existing subscription");

    // Retain As Published keeps a live message's retain flag; without it, it is cleared.
    let mut rap = subscriber(&scene, 5, "rap", "live/#", 0x08).await;
    let mut plain = subscriber(&scene, 5, "plain", "live/#", 0x00).await;
    publish_acked(&mut publisher, 5, "live/1", 0, true, b"kept").await;
    assert!(next_publish(&mut rap, 5).await.expect("delivery").retain, "Retain As Published");
    assert!(!next_publish(&mut plain, 5).await.expect("delivery").retain, "retain cleared");

    // No Local: a client does not receive its own messages on that subscription.
    let mut own = subscriber(&scene, 5, "own", "n/#", 0x04).await;
    own.send(&publish(5, "n/1", 0, 0, false, b"mine", &[])).await;
    publisher.send(&publish(5, "n/2", 0, 0, false, b"theirs", &[])).await;
    assert_eq!(next_publish(&mut own, 5).await.expect("delivery").payload, b"theirs");
}

/// Every PUBLISH that reaches `client` until it is silent for half a second, each QoS 1
/// one acknowledged.
async fn all_publishes(client: &mut RawClient, level: u8) -> Vec<Received> {
    let mut got = Vec::new();
    while let Ok(Some(packet)) = tokio::time::timeout(Duration::from_millis(500), client.receive()).await {
        let publish = parse_publish(level, &packet).unwrap_or_else(|| panic!("PUBLISH expected, got {packet:?}"));
        if publish.qos == 1 {
            client.send(&ack(0x40, publish.pkid)).await;
        }
        got.push(publish);
    }
    got
}

/// MQTT 5 3.3.4: a message matching several of a client's subscriptions reaches it as
/// one copy carrying every matching Subscription Identifier at the highest granted QoS,
/// or as one copy per subscription, each with its own identifier and QoS. Either way,
/// no identifier is lost or added and no copy exceeds the publish's QoS.
async fn overlapping_subscriptions_carry_their_subscription_identifiers_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    let mut client = RawClient::connected(scene.addr, 5, "overlap").await;
    for (pkid, filter, qos, id) in [(1, "ov/a", 1, Some(7)), (2, "ov/+", 0, Some(9)), (3, "ov/#", 2, None)] {
        let packet = match id {
            Some(id) => subscribe_with_id(pkid, filter, qos, id),
            None => subscribe(5, pkid, filter, qos),
        };
        client.send(&packet).await;
        let (first, body) = client.receive().await.expect("SUBACK");
        assert_eq!((first, *body.last().unwrap()), (0x90, qos), "{filter} granted at QoS {qos}");
    }
    let mut publisher = RawClient::connected(scene.addr, 5, "overlap-pub").await;
    // ov/a matches all three subscriptions; ov/b the last two.
    for (topic, matching) in [("ov/a", vec![(Some(7), 1), (Some(9), 0), (None, 2)]), ("ov/b", vec![(Some(9), 0), (None, 2)])] {
        publish_acked(&mut publisher, 5, topic, 1, false, topic.as_bytes()).await;
        let copies = all_publishes(&mut client, 5).await;
        assert!(!copies.is_empty(), "{topic}: no copy delivered");
        assert!(copies.iter().all(|c| c.topic == topic && c.payload == topic.as_bytes() && c.qos <= 1), "{topic}: {copies:?}");
        let mut ids: Vec<usize> = copies.iter().flat_map(|c| subscription_ids(&c.props)).collect();
        ids.sort();
        let mut expected: Vec<usize> = matching.iter().filter_map(|(id, _)| *id).collect();
        expected.sort();
        assert_eq!(ids, expected, "{topic}: the matching subscriptions' identifiers, each once");
        match copies.len() {
            1 => assert_eq!(copies[0].qos, 1, "{topic}: one copy goes at the highest granted QoS (capped by the publish's)"),
            n => {
                assert_eq!(n, matching.len(), "{topic}: one copy per matching subscription");
                for (id, granted) in matching {
                    let wanted = id.into_iter().collect::<Vec<_>>();
                    let copy = copies.iter().find(|c| subscription_ids(&c.props) == wanted).expect("a copy for each subscription");
                    assert_eq!(copy.qos, granted.min(1), "{topic}: the copy for subscription {id:?} at its own QoS");
                }
            }
        }
    }
}

/// A shared subscription (`$share/<group>/<filter>`) gives each message to one member of
/// its group, while a plain subscription to the same filter gets every message.
async fn a_shared_subscription_gives_each_message_to_one_member_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    let mut members = Vec::new();
    for id in ["member-1", "member-2"] {
        members.push(subscriber(&scene, 5, id, "$share/billing/sh/#", 1).await);
    }
    let mut plain = subscriber(&scene, 5, "plain-sh", "sh/#", 1).await;
    let mut publisher = RawClient::connected(scene.addr, 5, "sh-pub").await;
    let sent: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    for payload in &sent {
        publish_acked(&mut publisher, 5, "sh/lock-1", 1, false, payload.as_bytes()).await;
    }
    let payloads = |copies: Vec<Received>| copies.into_iter().map(|c| String::from_utf8(c.payload).unwrap()).collect::<Vec<_>>();
    let mut shared = Vec::new();
    for member in &mut members {
        shared.extend(payloads(all_publishes(member, 5).await));
    }
    shared.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(shared, expected, "each message to exactly one member of the group");
    assert_eq!(payloads(all_publishes(&mut plain, 5).await), sent, "a plain subscription gets every message, in order");
}

async fn the_clients_receive_maximum_and_maximum_packet_size_are_respected_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    let mut props = prop_u16(0x21, 2);
    props.extend(prop_u32(0x27, 200));
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect_with(5, "slow", true, &props, None)).await;
    assert_eq!(client.receive().await.expect("CONNACK").1[1], 0);
    client.send(&subscribe(5, 1, "rm/#", 1)).await;
    assert_eq!(client.receive().await.expect("SUBACK").0, 0x90);

    let mut publisher = RawClient::connected(scene.addr, 5, "fast").await;
    publish_acked(&mut publisher, 5, "rm/big", 1, false, &[b'x'; 300]).await;
    for i in 0..5u8 {
        publish_acked(&mut publisher, 5, "rm/small", 1, false, &[b'0' + i]).await;
    }
    // Two in flight at most; the 300-byte message is over the client's 200 bytes.
    let first = next_publish(&mut client, 5).await.expect("delivery");
    let second = next_publish(&mut client, 5).await.expect("delivery");
    assert_eq!((first.payload.clone(), second.payload.clone()), (b"0".to_vec(), b"1".to_vec()));
    assert!(silent(&mut client).await, "a third delivery waits for an acknowledgement");
    client.send(&ack(0x40, first.pkid)).await;
    assert_eq!(next_publish(&mut client, 5).await.expect("delivery").payload, b"2");
    assert!(silent(&mut client).await, "still two in flight");
    assert_eq!(scene.counter("mqtt_deliveries_too_large"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connack_tells_the_truth_and_keep_alive_zero_is_accepted() {
    let scene = Scene::start_with(&[], None, |config| config.broker.max_packet_size = 4096).await;
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect(5, "truth", true, 0)).await;
    let (first, body) = client.receive().await.expect("CONNACK");
    assert_eq!((first, body[1]), (0x20, 0), "keep-alive 0 accepted");
    let props = &body[3..];
    let find = |id: u8, len: usize| {
        let mut at = 0;
        while at < props.len() {
            let this = props[at];
            let size = match this {
                0x27 | 0x11 => 4,
                0x21 | 0x22 | 0x13 => 2,
                0x12 | 0x1f => 2 + u16::from_be_bytes([props[at + 1], props[at + 2]]) as usize,
                _ => 1,
            };
            if this == id {
                return Some(props[at + 1..at + 1 + len].to_vec());
            }
            at += 1 + size;
        }
        None
    };
    assert_eq!(find(0x27, 4), Some(4096u32.to_be_bytes().to_vec()), "Maximum Packet Size");
    assert_eq!(find(0x22, 2), Some(64u16.to_be_bytes().to_vec()), "Topic Alias Maximum");
    assert_eq!(find(0x25, 1), Some(vec![1]), "Retain Available");
    assert_eq!(find(0x2a, 1), Some(vec![1]), "Shared Subscription Available");
    assert_eq!(find(0x13, 2), None, "no Server Keep Alive: the client's is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connect_and_a_dollar_filter_are_answered_as_mqtt_says() {
    let scene = Scene::start(&[], None).await;
    for (level, code) in [(4u8, 0x80u8), (5, 0x8f)] {
        let mut client = RawClient::connected(scene.addr, level, &format!("dollar-{level}")).await;
        client.send(&subscribe(level, 3, "$SYS/#", 0)).await;
        let (first, body) = client.receive().await.expect("SUBACK, not a disconnect");
        assert_eq!((first, *body.last().unwrap()), (0x90, code), "MQTT level {level}");
        client.send(&[0xc0, 0]).await;
        assert_eq!(client.receive().await.expect("PINGRESP").0, 0xd0, "still connected");
        client.send(&connect(level, "again", true, 30)).await;
        if level == 5 {
            let (first, body) = client.receive().await.expect("DISCONNECT");
            assert_eq!((first, body[0]), (0xe0, 0x82), "Protocol error");
        }
        assert!(client.closed_by_peer().await, "a second CONNECT closes the connection");
    }
}

/// A v5 CONNECT (Clean Start 0, Session Expiry 0) with a will on `topic` (QoS 0) after
/// `delay` seconds.
fn connect_with_will(id: &str, topic: &str, delay: u32) -> Vec<u8> {
    crate::support::raw_mqtt::connect_with_will(id, false, 0, topic, delay)
}

async fn a_takeover_tells_the_old_connection_and_fires_only_its_will_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    let mut watcher = subscriber(&scene, 5, "watcher", "will/#", 0).await;
    let mut old = RawClient::open(scene.addr).await;
    old.send(&connect_with_will("lock", "will/old", 0)).await;
    assert_eq!(old.receive().await.expect("CONNACK").1[1], 0);
    let mut new = RawClient::open(scene.addr).await;
    new.send(&connect_with_will("lock", "will/new", 0)).await;
    assert_eq!(new.receive().await.expect("CONNACK").1[1], 0);
    let (first, body) = old.receive().await.expect("DISCONNECT to the old connection");
    assert_eq!((first, body[0]), (0xe0, 0x8e), "Session taken over");
    assert_eq!(next_publish(&mut watcher, 5).await.expect("the old will").topic, "will/old");
    assert!(silent(&mut watcher).await, "the new connection's will does not fire");
    new.send(&[0xc0, 0]).await;
    assert_eq!(new.receive().await.expect("PINGRESP").0, 0xd0, "the new connection serves");
}

async fn a_will_delay_is_cancelled_when_the_client_comes_back_in_time_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;
    let mut watcher = subscriber(&scene, 5, "watcher", "will/#", 0).await;
    let mut first = RawClient::open(scene.addr).await;
    first.send(&connect_with_will("phone", "will/phone", 2)).await;
    assert_eq!(first.receive().await.expect("CONNACK").1[1], 0);
    drop(first);
    // The gateway has seen the connection go (the watcher's is left): the will's delay runs.
    assert!(wait_for(Duration::from_secs(5), || scene.counter("connections") == 1).await, "the dropped connection closed");
    let _back = RawClient::connected(scene.addr, 5, "phone").await;
    assert!(tokio::time::timeout(Duration::from_secs(3), watcher.receive()).await.is_err(), "no will after 3 s");

    // Not back in time: the will fires after its delay.
    let mut gone = RawClient::open(scene.addr).await;
    gone.send(&connect_with_will("laptop", "will/laptop", 1)).await;
    assert_eq!(gone.receive().await.expect("CONNACK").1[1], 0);
    drop(gone);
    assert_eq!(next_publish(&mut watcher, 5).await.expect("the delayed will").topic, "will/laptop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_says_why_it_closes_a_connection() {
    let mut scene = Scene::start(&[], None).await;
    let mut kicked = RawClient::connected(scene.addr, 5, "kicked").await;
    assert!(scene.gateway().disconnect_client("kicked"));
    let (first, body) = kicked.receive().await.expect("DISCONNECT");
    assert_eq!((first, body[0]), (0xe0, 0x98), "Administrative action");
    assert!(!scene.gateway().disconnect_client("nobody"));

    let mut idle = RawClient::connected(scene.addr, 5, "idle").await;
    scene.shutdown().await;
    let (first, body) = idle.receive().await.expect("DISCONNECT at shutdown");
    assert_eq!((first, body[0]), (0xe0, 0x8b), "Server shutting down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_nobody_can_receive_skips_the_router_and_a_subscribed_one_does_not() {
    let scene = Scene::start(&[], None).await;
    let mut publisher = RawClient::connected(scene.addr, 4, "reporter").await;
    publish_acked(&mut publisher, 4, "devices/l1/state", 1, false, b"{}").await;
    assert_eq!(scene.counter("router_skipped"), 1);
    let mut sub = subscriber(&scene, 4, "listener", "devices/+/state", 0).await;
    publish_acked(&mut publisher, 4, "devices/l1/state", 1, false, b"{}").await;
    assert!(next_publish(&mut sub, 4).await.is_some());
    assert_eq!(scene.counter("router_skipped"), 1);
    // Unsubscribed again: skipped again, retained or not; the edge keeps a retained one
    // (the router keeps none) and sends it to the next subscriber.
    sub.send(&unsubscribe(4, 9, "devices/+/state")).await;
    assert_eq!(sub.receive().await.expect("UNSUBACK").0, 0xb0);
    publish_acked(&mut publisher, 4, "devices/l1/state", 1, false, b"{}").await;
    publish_acked(&mut publisher, 4, "devices/l1/state", 1, true, b"{\"retained\":1}").await;
    assert!(wait_for(Duration::from_secs(2), || scene.counter("router_skipped") == 3).await);
    let mut late = subscriber(&scene, 4, "late", "devices/+/state", 0).await;
    let retained = next_publish(&mut late, 4).await.expect("the retained message");
    assert_eq!((retained.retain, &retained.payload[..]), (true, &b"{\"retained\":1}"[..]));
}

async fn an_offline_session_keeps_qos_1_messages_and_not_qos_0_ones_on(kafka: Option<String>) {
    let clustered = kafka.is_some();
    let scene = Scene::start(&[], kafka).await;
    for level in [4, 5] {
        let id = format!("away-{level}");
        // MQTT 5 keeps a session after its connection only with a Session Expiry.
        let persistent = || match level {
            5 => connect_with(5, &id, false, &prop_u32(0x11, 60), None),
            _ => connect(level, &id, false, 30),
        };
        let mut away = RawClient::open(scene.addr).await;
        away.send(&persistent()).await;
        assert_eq!(away.receive().await.expect("CONNACK").1[1], 0);
        away.send(&subscribe(level, 1, "off/#", 1)).await;
        assert_eq!(away.receive().await.expect("SUBACK").0, 0x90);
        away.send(&crate::support::raw_mqtt::DISCONNECT).await;
        assert!(away.closed_by_peer().await);

        let mut publisher = RawClient::connected(scene.addr, level, &format!("pub-{level}")).await;
        publish_acked(&mut publisher, level, "off/0", 0, false, b"qos0").await;
        publish_acked(&mut publisher, level, "off/1", 1, false, b"qos1").await;

        let mut back = RawClient::open(scene.addr).await;
        back.send(&persistent()).await;
        let (_, connack) = back.receive().await.expect("CONNACK");
        assert_eq!((connack[0], connack[1]), (1, 0), "session present");
        let got = next_publish(&mut back, level).await.expect("the QoS 1 message kept while away");
        assert_eq!((got.topic.as_str(), got.qos), ("off/1", 1), "MQTT level {level}");
        back.send(&ack(0x40, got.pkid)).await;
        assert!(silent(&mut back).await, "MQTT level {level}: the QoS 0 message was not kept");
    }
    // On a cluster node the away session's messages went through its mailbox.
    assert_eq!(scene.counter("cluster_mail_posted") > 0, clustered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_of_the_wrong_kind_leaves_a_delivery_in_flight() {
    let scene = Scene::start(&[], None).await;
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect_with(5, "confused", true, &prop_u16(0x21, 1), None)).await;
    assert_eq!(client.receive().await.expect("CONNACK").1[1], 0);
    client.send(&subscribe(5, 1, "wk/#", 1)).await;
    assert_eq!(client.receive().await.expect("SUBACK").0, 0x90);
    let mut publisher = RawClient::connected(scene.addr, 5, "wk-pub").await;
    publish_acked(&mut publisher, 5, "wk/1", 1, false, b"first").await;
    publish_acked(&mut publisher, 5, "wk/2", 1, false, b"second").await;
    let first = next_publish(&mut client, 5).await.expect("delivery");
    // A PUBREC for a QoS 1 delivery acknowledges nothing: the second message still waits.
    client.send(&ack(0x50, first.pkid)).await;
    assert!(silent(&mut client).await, "Receive Maximum 1: the first is still in flight");
    client.send(&ack(0x40, first.pkid)).await;
    assert_eq!(next_publish(&mut client, 5).await.expect("delivery after the PUBACK").payload, b"second");
}

/// MQTT 5 Message Expiry (rumqttd's router keeps the publish time and does it): a
/// message whose interval passed while its subscriber was away is not delivered; one
/// still alive arrives with the interval lowered by the time it waited.
async fn message_expiry_drops_expired_messages_and_lowers_the_interval_of_the_others_on(kafka: Option<String>) {
    let clustered = kafka.is_some();
    let scene = Scene::start(&[], kafka).await;
    let session = prop_u32(0x11, 3600);
    let mut away = RawClient::open(scene.addr).await;
    away.send(&connect_with(5, "sub-exp", false, &session, None)).await;
    assert_eq!(away.receive().await.map(|(first, _)| first), Some(0x20));
    away.send(&subscribe(5, 1, "exp/#", 1)).await;
    assert_eq!(away.receive().await.map(|(first, _)| first), Some(0x90));
    away.send(&[0xe0, 0]).await;
    drop(away);
    assert!(wait_for(Duration::from_secs(5), || scene.counter("connections") == 0).await, "the subscriber is away");

    let mut publisher = RawClient::connected(scene.addr, 5, "pub-exp").await;
    for (topic, expiry) in [("exp/short", 1), ("exp/long", 100)] {
        publisher.send(&publish(5, topic, 1, 7, false, b"x", &prop_u32(0x02, expiry))).await;
        assert_eq!(publisher.receive().await.map(|(first, _)| first), Some(0x40), "PUBACK");
    }
    // Time passing is what is under test: the short message's 1 s runs out, the long
    // one's interval must come back lowered by the wait.
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let mut back = RawClient::open(scene.addr).await;
    back.send(&connect_with(5, "sub-exp", false, &session, None)).await;
    assert_eq!(back.receive().await.map(|(first, _)| first), Some(0x20));
    let long = next_publish(&mut back, 5).await.expect("the unexpired message");
    assert_eq!(long.topic, "exp/long");
    let interval = long.props.windows(5).find(|w| w[0] == 0x02).map(|w| u32::from_be_bytes([w[1], w[2], w[3], w[4]]));
    assert!(interval.is_some_and(|i| (97..=98).contains(&i)), "interval lowered by the ~2 s waited: {interval:?} in {:?}", long.props);
    back.send(&ack(0x40, long.pkid)).await;
    assert!(silent(&mut back).await, "exp/short expired");
    // On a cluster node the away session's messages went through its mailbox.
    assert_eq!(scene.counter("cluster_mail_posted") > 0, clustered);
}

/// CONNECTs an MQTT 5 client with Clean Start `clean` and Session Expiry `expiry`
/// (none when `None`); returns the client and whether the CONNACK says session present.
async fn connect_v5(scene: &Scene, id: &str, clean: bool, expiry: Option<u32>) -> (RawClient, bool) {
    let mut client = RawClient::open(scene.addr).await;
    let props = expiry.map(|e| prop_u32(0x11, e)).unwrap_or_default();
    client.send(&connect_with(5, id, clean, &props, None)).await;
    let (first, body) = client.receive().await.expect("CONNACK");
    assert_eq!((first, body[1]), (0x20, 0), "{id}: CONNACK accepting");
    (client, body[0] & 1 == 1)
}

/// Subscribes `client` (MQTT 5) to `filter` at QoS 1, then DISCONNECTs with `props`.
async fn subscribe_and_leave(mut client: RawClient, filter: &str, disconnect_props: &[u8]) {
    client.send(&subscribe(5, 1, filter, 1)).await;
    assert_eq!(client.receive().await.map(|(first, _)| first), Some(0x90));
    let mut body = vec![0x00, disconnect_props.len() as u8];
    body.extend_from_slice(disconnect_props);
    client.send(&crate::support::raw_mqtt::frame(0xe0, &body)).await;
    assert!(client.closed_by_peer().await);
}

/// A QoS 1 message to `topic`, acknowledged.
async fn publish_one(scene: &Scene, topic: &str) {
    let mut publisher = RawClient::connected(scene.addr, 5, "session-publisher").await;
    publisher.send(&publish(5, topic, 1, 7, false, b"kept?", &[])).await;
    assert_eq!(publisher.receive().await.map(|(first, _)| first), Some(0x40));
}

/// MQTT 5 sessions as the specification says: Session Expiry 0 ends a session with its
/// connection even with Clean Start 0; Clean Start 1 with an expiry keeps the session
/// afterwards; a session is kept for its expiry and then ends; `session present` is
/// true exactly when one was resumed; a DISCONNECT may shorten the expiry.
async fn session_expiry_and_clean_start_decide_what_outlives_a_connection_on(kafka: Option<String>) {
    let scene = Scene::start(&[], kafka).await;

    // Clean Start 0, no expiry: nothing outlives the connection.
    let (client, present) = connect_v5(&scene, "s-none", false, None).await;
    assert!(!present);
    subscribe_and_leave(client, "s/none", &[]).await;
    publish_one(&scene, "s/none").await;
    let (mut back, present) = connect_v5(&scene, "s-none", false, None).await;
    assert!(!present, "expiry 0: no session to resume");
    assert!(silent(&mut back).await, "expiry 0: no message kept");

    // Clean Start 1 with an expiry: kept afterwards, resumed with its message.
    let (client, _) = connect_v5(&scene, "s-kept", true, Some(60)).await;
    subscribe_and_leave(client, "s/kept", &[]).await;
    publish_one(&scene, "s/kept").await;
    let (mut back, present) = connect_v5(&scene, "s-kept", false, Some(60)).await;
    assert!(present, "resumed");
    let kept = next_publish(&mut back, 5).await.expect("the message kept for the session");
    assert_eq!(kept.topic, "s/kept");
    back.send(&ack(0x40, kept.pkid)).await;
    // Clean Start 1 now: the old session ends, nothing resumes.
    back.send(&[0xe0, 0]).await;
    let (mut fresh, present) = connect_v5(&scene, "s-kept", true, Some(60)).await;
    assert!(!present, "Clean Start 1 never resumes");
    publish_one(&scene, "s/kept").await;
    assert!(silent(&mut fresh).await, "the old subscription ended with its session");

    // Expiry 1 s: gone after 2 s.
    let (client, _) = connect_v5(&scene, "s-short", false, Some(1)).await;
    subscribe_and_leave(client, "s/short", &[]).await;
    assert!(wait_for(Duration::from_secs(5), || scene.counter("sessions_expired") == 1).await);
    publish_one(&scene, "s/short").await;
    let (mut back, present) = connect_v5(&scene, "s-short", false, Some(1)).await;
    assert!(!present, "expired");
    assert!(silent(&mut back).await);

    // CONNECT said 60 s, DISCONNECT says 0: the session ends now.
    let (client, _) = connect_v5(&scene, "s-shortened", false, Some(60)).await;
    subscribe_and_leave(client, "s/shortened", &prop_u32(0x11, 0)).await;
    let (_back, present) = connect_v5(&scene, "s-shortened", false, Some(60)).await;
    assert!(!present, "the DISCONNECT's expiry 0 ended it");
}

/// A lock's session: MQTT 5, Clean Start 0, Session Expiry 60 s, the Receive Maximum
/// given; subscribed to its exact command topic at QoS 1 when `subscribe`.
async fn lock_session(scene: &Scene, id: &str, receive_max: u16, subscribe_too: bool) -> RawClient {
    let mut props = prop_u32(0x11, 60);
    props.extend(prop_u16(0x21, receive_max));
    let mut client = RawClient::open(scene.addr).await;
    client.send(&connect_with(5, id, false, &props, None)).await;
    assert_eq!(client.receive().await.expect("CONNACK").0, 0x20);
    if subscribe_too {
        client.send(&subscribe(5, 1, &format!("devices/{id}/command"), 1)).await;
        assert_eq!(client.receive().await.expect("SUBACK").0, 0x90);
    }
    client
}

/// Subscriptions to one exact topic (a lock's command topic) are served by the edge
/// itself, through the session's inbox, with no router link: QoS downgrade at both MQTT
/// levels, the Receive Maximum, what a full inbox refuses (`broker.max_queued_messages`,
/// counted), and the deliveries a client did not acknowledge sent again, in order, to
/// the connection that takes its session over.
async fn exact_subscriptions_keep_every_delivery_promise_on(kafka: Option<String>) {
    let scene = Scene::start_with(&[], kafka, |config| config.broker.max_queued_messages = 3).await;
    deliveries_are_capped(&scene, "ex/q", "ex/q").await;

    // Receive Maximum 1, nothing acknowledged: one in flight, three in the inbox, the
    // fifth refused.
    let mut lock = lock_session(&scene, "xl", 1, true).await;
    let mut publisher = RawClient::connected(scene.addr, 5, "xl-commands").await;
    for n in 1..=5u8 {
        publish_acked(&mut publisher, 5, "devices/xl/command", 1, false, &[b'0' + n]).await;
    }
    let first = next_publish(&mut lock, 5).await.expect("the first command");
    assert_eq!(first.payload, b"1");
    assert!(silent(&mut lock).await, "Receive Maximum 1: the others wait");
    assert!(wait_for(Duration::from_secs(2), || scene.counter("mqtt_inbox_full") == 1).await, "the fifth refused");
    lock.send(&ack(0x40, first.pkid)).await;
    let second = next_publish(&mut lock, 5).await.expect("the second command");
    assert_eq!(second.payload, b"2");

    // Taken over with the second unacknowledged: the new connection gets it again, then
    // the rest, in order.
    let mut again = lock_session(&scene, "xl", 10, false).await;
    let (first, body) = lock.receive().await.expect("DISCONNECT");
    assert_eq!((first, body[0]), (0xe0, 0x8e), "Session taken over");
    let mut got = Vec::new();
    for received in all_publishes(&mut again, 5).await {
        got.push(received.payload[0]);
    }
    assert_eq!(got, b"234", "unacknowledged first, then what waited, in order");
}

/// A persistent session whose connection ends in the very batch that subscribed it to a
/// wildcard filter (the router's) keeps that subscription: the client's router link is
/// opened at the end to take it, and the resumed session is served through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_subscription_in_a_connections_last_batch_outlives_it() {
    let scene = Scene::start(&[], None).await;
    let (mut client, _) = connect_v5(&scene, "last-batch", false, Some(60)).await;
    // The SUBSCRIBE and a packet only servers send (a CONNACK), in one write.
    let mut batch = subscribe(5, 1, "last/#", 1);
    batch.extend([0x20, 0x03, 0x00, 0x00, 0x00]);
    client.send(&batch).await;
    assert_eq!(client.receive().await.expect("SUBACK").0, 0x90);
    assert!(client.closed_by_peer().await, "a protocol error ends the connection");
    assert!(wait_for(Duration::from_secs(5), || scene.counter("connections") == 0).await);

    let (mut back, present) = connect_v5(&scene, "last-batch", false, Some(60)).await;
    assert!(present, "the session was kept");
    publish_one(&scene, "last/x").await;
    let got = next_publish(&mut back, 5).await.expect("a delivery under the subscription made in the last batch");
    assert_eq!(got.topic, "last/x");
}

/// Runs each case on a gateway alone and on a cluster node (Kafka: the mock cluster),
/// where sessions are kept in the cluster and an away session's messages in its mailbox.
macro_rules! alone_and_in_a_cluster {
    ($($case:ident => $alone:ident, $clustered:ident;)*) => { $(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $alone() {
            $case(None).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $clustered() {
            let kafka = MockKafka::new(&[]);
            $case(Some(kafka.bootstrap())).await;
        }
    )* };
}

alone_and_in_a_cluster! {
    exact_subscriptions_keep_every_delivery_promise_on => exact_subscriptions_keep_every_delivery_promise, exact_subscriptions_keep_every_delivery_promise_in_a_cluster;
    overlapping_subscriptions_carry_their_subscription_identifiers_on => overlapping_subscriptions_carry_their_subscription_identifiers, overlapping_subscriptions_carry_their_subscription_identifiers_in_a_cluster;
    a_shared_subscription_gives_each_message_to_one_member_on => a_shared_subscription_gives_each_message_to_one_member, a_shared_subscription_gives_each_message_to_one_member_in_a_cluster;
    a_takeover_tells_the_old_connection_and_fires_only_its_will_on => a_takeover_tells_the_old_connection_and_fires_only_its_will, a_takeover_tells_the_old_connection_and_fires_only_its_will_in_a_cluster;
    a_will_delay_is_cancelled_when_the_client_comes_back_in_time_on => a_will_delay_is_cancelled_when_the_client_comes_back_in_time, a_will_delay_is_cancelled_when_the_client_comes_back_in_time_in_a_cluster;
    an_offline_session_keeps_qos_1_messages_and_not_qos_0_ones_on => an_offline_session_keeps_qos_1_messages_and_not_qos_0_ones, an_offline_session_keeps_qos_1_messages_and_not_qos_0_ones_in_a_cluster;
    message_expiry_drops_expired_messages_and_lowers_the_interval_of_the_others_on => message_expiry_drops_expired_messages_and_lowers_the_interval_of_the_others, message_expiry_drops_expired_messages_and_lowers_the_interval_of_the_others_in_a_cluster;
    session_expiry_and_clean_start_decide_what_outlives_a_connection_on => session_expiry_and_clean_start_decide_what_outlives_a_connection, session_expiry_and_clean_start_decide_what_outlives_a_connection_in_a_cluster;
    no_local_and_retain_as_published_and_retain_handling_are_honoured_on => no_local_and_retain_as_published_and_retain_handling_are_honoured, no_local_and_retain_as_published_and_retain_handling_are_honoured_in_a_cluster;
    the_clients_receive_maximum_and_maximum_packet_size_are_respected_on => the_clients_receive_maximum_and_maximum_packet_size_are_respected, the_clients_receive_maximum_and_maximum_packet_size_are_respected_in_a_cluster;
    a_delivery_never_has_a_higher_qos_than_its_publish_or_its_subscription_on => a_delivery_never_has_a_higher_qos_than_its_publish_or_its_subscription, a_delivery_never_has_a_higher_qos_than_its_publish_or_its_subscription_in_a_cluster;
}
