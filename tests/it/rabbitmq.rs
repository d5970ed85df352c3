//! RabbitMQ as a destination, against a real `rabbitmq-server` process (one shared by
//! the tests that neither stop, alarm nor configure it, each in a virtual host of its
//! own; a process of its own for each of the others): the door-lock scenario on
//! exchanges bound to queues, a rule feeding Kafka and RabbitMQ at once, and the broker
//! away at start, restarted under load, blocking the connection (memory alarm) and
//! closing the channel: nothing acknowledged is lost, and each device's messages arrive
//! in order.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use hookline::config::{Config, RabbitMqConfig};
use rumqttc::QoS;

use crate::seed_scenario::{play, COMMAND, LOCK, STATE};
use crate::support::fixtures::Pki;
use crate::support::rabbit::{Message, Rabbit};
use crate::support::scene::{consume, shipped_rules, wait_for, Device, MockKafka, Scene};

/// A RabbitMQ destination named `rabbit` on `rabbit`, confirms timing out after `confirm_timeout_ms`.
fn rabbit_sink(config: &mut Config, rabbit: &Rabbit) {
    let sink = RabbitMqConfig { uri: rabbit.uri(), confirm_timeout_ms: 5000, ..RabbitMqConfig::default() };
    config.sink.rabbitmq.insert("rabbit".into(), sink);
}

/// The scenario's exchanges on `rabbit`, each bound to a queue (`lock-states`,
/// `lock-commands`), and a gateway with the shipped rules publishing to them.
async fn broker_and_gateway(rabbit: Rabbit) -> (Rabbit, Scene) {
    rabbit.exchange_to_queue("message_state", "lock-states", "#").await;
    rabbit.exchange_to_queue("message_command", "lock-commands", "#").await;
    let scene = gateway(&rabbit).await;
    (rabbit, scene)
}

/// A gateway with the shipped rules whose only destination is `rabbit`: the rules'
/// `route("message_state")` publishes to the exchange `message_state`.
async fn gateway(rabbit: &Rabbit) -> Scene {
    Scene::start_with(&shipped_rules(), None, |config| rabbit_sink(config, rabbit)).await
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn door_lock_scenario_the_state_report_and_the_acked_command_land_on_their_exchanges() {
    let (rabbit, mut scene) = broker_and_gateway(Rabbit::shared()).await;

    play(&scene).await;
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_delivered") == 2).await, "both confirmed");
    scene.shutdown().await;

    let states = rabbit.drain("lock-states").await;
    assert_eq!(states.len(), 1, "{states:#?}");
    let state = &states[0];
    assert_eq!(state.routing_key, LOCK, "the route's key (the lock id) is the routing key");
    assert!(state.persistent, "delivery mode 2");
    assert_eq!(state.content_type.as_deref(), Some("application/json"));
    assert_eq!(state.header("hookline-node"), Some(&b"gateway@127.0.0.1"[..]));
    let ts = state.json()["ts"].as_u64().unwrap();
    assert_eq!(
        String::from_utf8(state.body.clone()).unwrap(),
        format!(
            r#"{{"client_id":"{LOCK}","username":"","topic":"devices/{LOCK}/state","payload":"{}","qos":1,"node":"gateway@127.0.0.1","ts":{ts}}}"#,
            b64(STATE)
        ),
        "the same envelope as on Kafka"
    );
    let commands = rabbit.drain("lock-commands").await;
    assert_eq!(commands.len(), 1, "{commands:#?}");
    assert_eq!(commands[0].routing_key, LOCK);
    assert_eq!(commands[0].json()["from"], "business-app-1");
    assert_eq!(commands[0].json()["payload"], b64(COMMAND));
}

/// Routes each state report to Kafka (`route`, the envelope) and to RabbitMQ
/// (`route_to "rabbit"`, the raw payload, routing key `state.<lock>`, one header).
const BOTH_RULE: &str = include_str!("../../examples/rules/state_to_kafka_and_rabbitmq.wat");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_sends_the_same_event_to_kafka_and_to_rabbitmq() {
    let rabbit = Rabbit::shared();
    rabbit.exchange_to_queue("lock-events", "lock-states", "state.*").await;
    let kafka = MockKafka::new(&["message_state"]);
    let mut scene = Scene::start_with(&[("both.wat", BOTH_RULE.as_bytes())], Some(kafka.bootstrap()), |config| {
        rabbit_sink(config, &rabbit);
    })
    .await;
    let lock = Device::connect(scene.addr, LOCK).await;
    lock.publish(&format!("devices/{LOCK}/state"), STATE, QoS::AtLeastOnce).await;
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_delivered") == 2).await, "confirmed by both");
    scene.shutdown().await;

    let bootstrap = kafka.bootstrap();
    let records =
        tokio::task::spawn_blocking(move || consume(&bootstrap, "message_state", 1, Duration::from_secs(20), Duration::from_millis(300)))
            .await
            .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].key.as_str(), &records[0].json()["payload"]), (LOCK, &serde_json::Value::from(b64(STATE))));
    let messages = rabbit.drain("lock-states").await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message.routing_key, format!("state.{LOCK}"));
    assert_eq!(message.body, STATE.as_bytes(), "the raw payload, as the route asked");
    assert_eq!(message.content_type, None, "not the JSON envelope");
    assert_eq!(message.header("schema"), Some(&b"door-lock/1"[..]), "the rule's header");
    assert!(message.header("hookline-node").is_some() && message.header("hookline-seq").is_some(), "{message:?}");
}

/// Numbered state reports `<lock> <n>` from 10 locks at QoS 1, `per_lock` each, one
/// every `pace`; returns how many were acknowledged (PUBACK) per lock.
async fn publish_numbered(scene: &Scene, per_lock: usize, pace: Duration) -> BTreeMap<String, usize> {
    let mut tasks = Vec::new();
    for l in 0..10 {
        let addr = scene.addr;
        tasks.push(tokio::spawn(async move {
            let id = format!("lock-{l}");
            let mut lock = Device::connect(addr, &id).await;
            for n in 0..per_lock {
                lock.publish(&format!("devices/{id}/state"), format!("{id} {n}"), QoS::AtLeastOnce).await;
                tokio::time::sleep(pace).await;
            }
            lock.wait_pubacks(per_lock).await;
            lock.disconnect().await;
            (id, per_lock)
        }));
    }
    let mut acked = BTreeMap::new();
    for task in tasks {
        let (id, n) = task.await.unwrap();
        acked.insert(id, n);
    }
    acked
}

/// Per lock, from the messages of the numbered reports: delivered (distinct), duplicated,
/// lost (acknowledged, never delivered); panics if first deliveries are out of order.
fn tally(messages: &[Message], acked: &BTreeMap<String, usize>) -> (usize, usize, usize) {
    let mut seen: BTreeMap<String, (HashSet<usize>, Option<usize>)> = BTreeMap::new();
    let mut duplicated = 0;
    for message in messages {
        let payload = message.json()["payload"].as_str().unwrap().to_string();
        let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(payload).unwrap()).unwrap();
        let (id, n) = text.split_once(' ').unwrap();
        let n: usize = n.parse().unwrap();
        let (distinct, last_first) = seen.entry(id.to_string()).or_default();
        if !distinct.insert(n) {
            duplicated += 1;
            continue;
        }
        assert!(last_first.is_none_or(|last| n > last), "{id}: {n} delivered first after {last_first:?}");
        *last_first = Some(n);
    }
    let delivered = seen.values().map(|(distinct, _)| distinct.len()).sum();
    let lost = acked.iter().map(|(id, n)| (0..*n).filter(|i| !seen.get(id).is_some_and(|(d, _)| d.contains(i))).count()).sum();
    (delivered, duplicated, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_under_load_loses_nothing_acknowledged_and_keeps_each_locks_order() {
    let (mut rabbit, mut scene) = broker_and_gateway(Rabbit::start()).await;

    let load = publish_numbered(&scene, 300, Duration::from_millis(15));
    let restart = async {
        // Under load: reports are flowing to the broker when it goes.
        assert!(wait_for(Duration::from_secs(20), || scene.counter("records_delivered") >= 100).await, "reports flowing");
        // Away for as long as it takes to boot again.
        tokio::task::block_in_place(|| {
            rabbit.stop();
            rabbit.run();
        });
    };
    let (acked, ()) = tokio::join!(load, restart);
    let total: usize = acked.values().sum();
    assert_eq!(total, 3000);
    assert!(
        wait_for(Duration::from_secs(60), || scene.counter("records_delivered") >= total as i64 && scene.gateway().drained()).await,
        "every acknowledged report confirmed: {} of {total}",
        scene.counter("records_delivered")
    );
    scene.shutdown().await;
    let messages = rabbit.drain("lock-states").await;
    let (delivered, duplicated, lost) = tally(&messages, &acked);
    eprintln!("broker restart under load: {total} acknowledged, {delivered} delivered, {duplicated} duplicated, {lost} lost");
    assert_eq!((delivered, lost), (total, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_away_at_start_gets_everything_once_it_is_up() {
    let mut rabbit = Rabbit::start();
    rabbit.exchange_to_queue("message_state", "lock-states", "#").await;
    rabbit.stop();
    let mut scene = gateway(&rabbit).await;
    let acked = publish_numbered(&scene, 20, Duration::ZERO).await;
    // A wait on nothing happening: what is under test is that no record is confirmed
    // while the broker is away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scene.counter("records_delivered"), 0, "nothing can be delivered yet");

    tokio::task::block_in_place(|| rabbit.run());
    assert!(wait_for(Duration::from_secs(60), || scene.counter("records_delivered") >= 200).await, "delivered once the broker is up");
    scene.shutdown().await;
    let (delivered, duplicated, lost) = tally(&rabbit.drain("lock-states").await, &acked);
    assert_eq!((delivered, duplicated, lost), (200, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_connection_holds_records_until_the_memory_alarm_clears() {
    let rabbit = Rabbit::start();
    rabbit.exchange_to_queue("message_state", "lock-states", "#").await;
    // Confirms time out after 2 s: the wait below outlasts that twice.
    let mut scene = Scene::start_with(&shipped_rules(), None, |config| {
        rabbit_sink(config, &rabbit);
        config.sink.rabbitmq["rabbit"].confirm_timeout_ms = 2000;
    })
    .await;
    let first = publish_numbered(&scene, 1, Duration::ZERO).await;
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_delivered") == 10).await, "connected and flowing");

    tokio::task::block_in_place(|| rabbit.memory_alarm(true));
    let mut acked = publish_numbered(&scene, 30, Duration::ZERO).await;
    // A wait on nothing happening, longer than the confirm timeout: the connection
    // stays blocked, whichever connection the gateway holds by then.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(scene.counter("records_delivered"), 10, "nothing confirmed while blocked");
    tokio::task::block_in_place(|| rabbit.memory_alarm(false));
    assert!(wait_for(Duration::from_secs(30), || scene.counter("records_delivered") >= 310).await, "delivered once the alarm clears");
    scene.shutdown().await;

    // The first round's reports are numbered 0 too: count the second round's alone.
    let messages = rabbit.drain("lock-states").await;
    assert_eq!(tally(&messages[..10], &first), (10, 0, 0));
    acked.values_mut().for_each(|n| *n = 30);
    let (delivered, duplicated, lost) = tally(&messages[10..], &acked);
    eprintln!("memory alarm: 300 acknowledged while blocked, {delivered} delivered, {duplicated} duplicated, {lost} lost");
    assert_eq!((delivered, lost), (300, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_broker_closes_is_reopened_and_loses_nothing() {
    let (rabbit, mut scene) = broker_and_gateway(Rabbit::shared()).await;
    let app = Device::connect(scene.addr, "business-app").await;
    let mut subscriber = Device::connect(scene.addr, "lock-x").await;
    subscriber.subscribe("devices/lock-x/command").await;
    app.publish("devices/lock-x/command", "before", QoS::AtLeastOnce).await;
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_delivered") == 1).await, "the command exchange is known");

    // The command exchange goes; the next acknowledged command is published to it (the
    // gateway checked it exists already), and RabbitMQ closes the channel (404), with
    // state reports in flight on it.
    let connection = rabbit.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel.exchange_delete("message_command".into(), Default::default()).await.unwrap();
    let load = publish_numbered(&scene, 100, Duration::from_millis(5));
    let command = async {
        // With state reports in flight on the channel.
        assert!(wait_for(Duration::from_secs(10), || scene.counter("records_delivered") >= 50).await, "reports flowing");
        app.publish("devices/lock-x/command", "after", QoS::AtLeastOnce).await;
    };
    let (acked, ()) = tokio::join!(load, command);
    assert!(wait_for(Duration::from_secs(30), || scene.counter("records_delivered") >= 1001).await);
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_failed") == 1).await, "the command to the missing exchange");
    scene.shutdown().await;
    let (delivered, _, lost) = tally(&rabbit.drain("lock-states").await, &acked);
    assert_eq!((delivered, lost), (1000, 0));
    drop(subscriber);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_verifies_the_broker_with_the_configured_ca_and_delivers() {
    let pki = Pki::new("", &["localhost"]);
    let (ca_pem, server_pem, key_pem) = (&pki.ca_pem, &pki.server_pem, &pki.server_key_pem);
    let rabbit = Rabbit::start_with(|tls_port| {
        format!(
            "listeners.ssl.default = {tls_port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\n",
            ca_pem.display(),
            server_pem.display(),
            key_pem.display()
        )
    });
    let tls_port = rabbit.spare_port;
    rabbit.exchange_to_queue("message_state", "lock-states", "#").await;
    let rules = shipped_rules();
    let amqps = |ca_file: Option<std::path::PathBuf>| {
        move |config: &mut Config| {
            let uri = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
            let sink = RabbitMqConfig { uri, ca_file, confirm_timeout_ms: 5000, ..RabbitMqConfig::default() };
            config.sink.rabbitmq.insert("rabbit".into(), sink);
        }
    };

    // Without the CA the broker's certificate is not trusted: nothing goes out.
    let mut untrusted = Scene::start_with(&rules, None, amqps(None)).await;
    let lock = Device::connect(untrusted.addr, LOCK).await;
    lock.publish(&format!("devices/{LOCK}/state"), STATE, QoS::AtLeastOnce).await;
    // A wait on nothing happening: an untrusted broker must get nothing in this time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(untrusted.counter("records_delivered"), 0, "an untrusted broker gets nothing");
    lock.disconnect().await;
    untrusted.shutdown().await;
    assert!(rabbit.drain("lock-states").await.is_empty());

    let mut scene = Scene::start_with(&rules, None, amqps(Some(ca_pem.clone()))).await;
    let lock = Device::connect(scene.addr, LOCK).await;
    lock.publish(&format!("devices/{LOCK}/state"), STATE, QoS::AtLeastOnce).await;
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_delivered") == 1).await, "confirmed over TLS");
    scene.shutdown().await;
    let messages = rabbit.drain("lock-states").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].json()["payload"], b64(STATE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_exchanges_are_made_and_a_message_no_queue_takes_fails_for_good() {
    let rabbit = Rabbit::shared();
    let mut scene = Scene::start_with(&shipped_rules(), None, |config| {
        let sink = RabbitMqConfig { uri: rabbit.uri(), declare_exchanges: true, ..RabbitMqConfig::default() };
        config.sink.rabbitmq.insert("rabbit".into(), sink);
    })
    .await;
    let lock = Device::connect(scene.addr, LOCK).await;
    lock.publish(&format!("devices/{LOCK}/state"), STATE, QoS::AtLeastOnce).await;
    // Declared by the gateway, but no queue is bound: RabbitMQ returns the message.
    assert!(wait_for(Duration::from_secs(10), || scene.counter("records_failed") == 1).await, "unroutable: failed for good");
    assert_eq!(scene.counter("records_delivered"), 0);
    scene.shutdown().await;

    let connection = rabbit.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
    let declared = channel.exchange_declare("message_state".into(), lapin::ExchangeKind::Topic, passive, Default::default()).await;
    assert!(declared.is_ok(), "the gateway declared the exchange: {declared:?}");
    let listed = tokio::task::block_in_place(|| rabbit.ctl(&["list_exchanges", "-p", rabbit.vhost(), "-q", "name", "type", "durable"]));
    assert!(listed.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["message_state", "topic", "true"]), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_the_broker_is_away_keeps_the_records_for_the_next_start() {
    let mut rabbit = Rabbit::start();
    rabbit.exchange_to_queue("message_state", "lock-states", "#").await;
    rabbit.stop();
    // A window of 5: the workers soon wait for room in the sink, and shutdown must end
    // that wait when its grace runs out.
    let small_window = |config: &mut Config| {
        rabbit_sink(config, &rabbit);
        config.sink.rabbitmq["rabbit"].max_in_flight = 5;
    };
    let mut first = Scene::start_with(&shipped_rules(), None, small_window).await;
    let acked = publish_numbered(&first, 30, Duration::ZERO).await;
    let stopping = tokio::time::timeout(Duration::from_secs(30), first.shutdown()).await;
    assert!(stopping.is_ok(), "shutdown ends though RabbitMQ is away and the sink is full");

    tokio::task::block_in_place(|| rabbit.run());
    let data = first.data_dir();
    let mut second = Scene::start_with(&shipped_rules(), None, |config| {
        rabbit_sink(config, &rabbit);
        config.data = data;
    })
    .await;
    assert!(wait_for(Duration::from_secs(30), || second.counter("records_delivered") >= 300).await, "delivered by the next start");
    second.shutdown().await;
    assert_eq!(tally(&rabbit.drain("lock-states").await, &acked), (300, 0, 0));
}
