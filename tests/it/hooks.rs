//! Every hook point fires, with the envelope fields the scenario documents, including
//! the three ways a connection ends without a DISCONNECT.

use std::time::Duration;

use rumqttc::QoS;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::support::fixtures::route_rule;
use crate::support::raw_mqtt;
use crate::support::scene::{wait_for, Device, Scene};

/// One rule per hook, each routing everything to a topic named after the hook.
fn every_hook_rules() -> Vec<(String, Vec<u8>)> {
    [
        "client.connected",
        "client.disconnected",
        "session.subscribed",
        "session.unsubscribed",
        "message.publish",
        "message.delivered",
        "message.acked",
    ]
    .iter()
    .map(|hook| {
        let topic = format!("hook_{}", hook.replace('.', "_"));
        (format!("{topic}.wat"), route_rule(hook, "#", &topic).into_bytes())
    })
    .collect()
}

async fn scene() -> Scene {
    let rules = every_hook_rules();
    let rules: Vec<(&str, &[u8])> = rules.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    Scene::start(&rules, None).await
}

fn records_of<'a>(records: &'a [Value], topic: &str, client: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["topic"] == topic && r["value"]["client_id"] == client).map(|r| &r["value"]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_raises_every_hook_with_its_fields() {
    let scene = scene().await;
    let mut lock = Device::connect(scene.addr, "lock-1").await;
    lock.subscribe("devices/lock-1/command").await;
    let app = Device::connect(scene.addr, "business-app-1").await;
    app.publish("devices/lock-1/command", b"unlock".to_vec(), QoS::AtLeastOnce).await;
    let command = tokio::time::timeout(Duration::from_secs(5), lock.inbox.recv()).await.unwrap().unwrap();
    assert_eq!(&command.payload[..], b"unlock");
    lock.client.unsubscribe("devices/lock-1/command").await.unwrap();
    lock.wait_ack(|p| matches!(p, rumqttc::Packet::UnsubAck(_))).await;
    lock.disconnect().await;

    // connected x2, subscribed, publish, delivered, acked, unsubscribed, disconnected
    let records = scene.file_records(8).await;
    let one = |topic: &str, client: &str| {
        let found = records_of(&records, topic, client);
        assert_eq!(found.len(), 1, "{topic} for {client}: {records:#?}");
        found[0].clone()
    };
    let connected = one("hook_client_connected", "lock-1");
    assert_eq!(connected["node"], "gateway@127.0.0.1");
    one("hook_client_connected", "business-app-1");
    let subscribed = one("hook_session_subscribed", "lock-1");
    assert_eq!(subscribed["topic"], "devices/lock-1/command");
    assert_eq!(subscribed["qos"], 1);
    let published = one("hook_message_publish", "business-app-1");
    assert_eq!(published["topic"], "devices/lock-1/command");
    assert_eq!(published["payload"], "dW5sb2Nr");
    for hook in ["hook_message_delivered", "hook_message_acked"] {
        let record = one(hook, "lock-1");
        assert_eq!(record["from"], "business-app-1", "{hook}");
        assert_eq!(record["topic"], "devices/lock-1/command", "{hook}");
        assert_eq!(record["payload"], "dW5sb2Nr", "{hook}");
        assert_eq!(record["qos"], 1, "{hook}");
    }
    assert_eq!(one("hook_session_unsubscribed", "lock-1")["topic"], "devices/lock-1/command");
    assert_eq!(one("hook_client_disconnected", "lock-1")["reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tcp_connection_raises_disconnected_closed() {
    let scene = scene().await;
    let device = Device::connect(scene.addr, "dropper").await;
    device.drop_connection();
    let records = scene.file_records(2).await;
    let found = records_of(&records, "hook_client_disconnected", "dropper");
    assert_eq!(found.len(), 1, "{records:#?}");
    assert_eq!(found[0]["reason"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_expires_its_keepalive() {
    let scene = scene().await;
    let mut socket = tokio::net::TcpStream::connect(scene.addr).await.unwrap();
    socket.write_all(&raw_mqtt::connect(4, "sleepy", true, 1)).await.unwrap();
    // Say nothing more: the broker gives up after 1.5 x keep-alive.
    let records = scene.file_records(2).await;
    let found = records_of(&records, "hook_client_disconnected", "sleepy");
    assert_eq!(found.len(), 1, "{records:#?}");
    assert_eq!(found[0]["reason"], "keepalive_timeout");
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_keepalive_is_accepted() {
    use tokio::io::AsyncReadExt;
    let scene = scene().await;
    let mut socket = tokio::net::TcpStream::connect(scene.addr).await.unwrap();
    socket.write_all(&raw_mqtt::connect(4, "no-keepalive", true, 0)).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut connack)).await.unwrap().unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK, accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_id_takes_over() {
    let scene = scene().await;
    let first = Device::connect(scene.addr, "twin").await;
    let second = Device::connect(scene.addr, "twin").await;
    let records = scene.file_records(3).await;
    assert_eq!(records_of(&records, "hook_client_connected", "twin").len(), 2);
    let ok = wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(scene.data_dir().join("records.jsonl")).unwrap();
        text.contains("\"reason\":\"takeover\"")
    })
    .await;
    assert!(ok, "no takeover disconnect recorded");
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_fires_as_message_publish_when_the_connection_drops() {
    let scene = scene().await;
    let device = Device::connect_with(scene.addr, "lock-will", |options| {
        options.set_last_will(rumqttc::LastWill::new("devices/lock-will/state", "offline", QoS::AtLeastOnce, false));
    })
    .await;
    device.drop_connection();
    let records = scene.file_records(3).await;
    let found = records_of(&records, "hook_message_publish", "lock-will");
    assert_eq!(found.len(), 1, "{records:#?}");
    assert_eq!(found[0]["topic"], "devices/lock-will/state");
    assert_eq!(found[0]["payload"], "b2ZmbGluZQ==");
    assert_eq!(found[0]["qos"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_session_with_qos2_raises_delivered_and_acked_on_pubrec() {
    use rumqttc::v5::mqttbytes::v5::Packet as V5Packet;
    use rumqttc::v5::mqttbytes::QoS as V5QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let scene = scene().await;
    let connect = |id: &str| {
        let mut options = MqttOptions::new(id, scene.addr.ip().to_string(), scene.addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        AsyncClient::new(options, 100)
    };
    let (lock, mut lock_loop) = connect("lock-v5");
    let (app, mut app_loop) = connect("app-v5");
    lock.subscribe("devices/lock-v5/command", V5QoS::ExactlyOnce).await.unwrap();
    let lock_task = tokio::spawn(async move {
        loop {
            match lock_loop.poll().await {
                Ok(Event::Incoming(V5Packet::SubAck(_))) => {
                    app.publish("devices/lock-v5/command", V5QoS::ExactlyOnce, false, "open").await.unwrap();
                }
                Ok(Event::Incoming(V5Packet::Publish(p))) => return p.payload,
                Ok(_) => {}
                Err(e) => panic!("lock connection failed: {e}"),
            }
        }
    });
    let app_task = tokio::spawn(async move { while app_loop.poll().await.is_ok() {} });
    let payload = tokio::time::timeout(Duration::from_secs(5), lock_task).await.unwrap().unwrap();
    assert_eq!(&payload[..], b"open");

    let records = scene.file_records(7).await;
    let subscribed = records_of(&records, "hook_session_subscribed", "lock-v5");
    assert_eq!(subscribed.len(), 1, "{records:#?}");
    assert_eq!(subscribed[0]["qos"], 2);
    assert!(
        wait_for(Duration::from_secs(5), || {
            let text = std::fs::read_to_string(scene.data_dir().join("records.jsonl")).unwrap();
            text.contains("hook_message_acked")
        })
        .await
    );
    let records = scene.file_records(7).await;
    for hook in ["hook_message_delivered", "hook_message_acked"] {
        let found = records_of(&records, hook, "lock-v5");
        assert_eq!(found.len(), 1, "{hook}: {records:#?}");
        assert_eq!(found[0]["qos"], 2);
        assert_eq!(found[0]["from"], "app-v5");
    }
    app_task.abort();
}

/// Every record carries the node and its event's number in the device's session, in
/// headers: numbers grow through a session, and go on when the session resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_node_and_a_session_sequence_number_that_goes_on_when_the_session_resumes() {
    let rule = route_rule("message.publish", "#", "t");
    let scene = Scene::start(&[("publish.wat", rule.as_bytes())], None).await;
    let persistent = |o: &mut rumqttc::MqttOptions| {
        o.set_clean_session(false);
    };
    let lock = Device::connect_with(scene.addr, "lock-s", persistent).await;
    lock.publish("devices/lock-s/state", "1", QoS::AtLeastOnce).await;
    lock.publish("devices/lock-s/state", "2", QoS::AtLeastOnce).await;
    scene.file_records(2).await;
    lock.disconnect().await;
    let lock = Device::connect_with(scene.addr, "lock-s", persistent).await;
    lock.publish("devices/lock-s/state", "3", QoS::AtLeastOnce).await;

    let records = scene.file_records(3).await;
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| {
            assert_eq!(r["headers"]["hookline-node"], "gateway@127.0.0.1", "{r}");
            r["headers"]["hookline-seq"].as_str().expect("hookline-seq").parse().unwrap()
        })
        .collect();
    // connected 1, publishes 2 and 3, disconnected 4; resumed: connected 5, publish 6.
    assert_eq!(seqs, [2, 3, 6], "{records:#?}");
}
