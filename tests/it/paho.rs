//! Sequences of Eclipse Paho's MQTT interoperability suite that hookline once failed
//! (subscribe options with Retain Handling 0 on an existing subscription, request and
//! response, a QoS 1 delivery not acknowledged sent again on reconnect), driven by
//! `tests/paho/suite_sequences.py` with the paho-mqtt client from PyPI (`.ci/run`
//! installs it): on a gateway alone and on a cluster node.

use crate::support::scene::{MockKafka, Scene};

/// Runs the sequences against `scene`; panics with their output when a step fails.
async fn sequences(scene: &Scene, what: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/paho/suite_sequences.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .args([scene.addr.ip().to_string(), scene.addr.port().to_string()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{what}:\n{text}");
    assert!(
        output.status.success(),
        "{what}: a step of the Paho suite's sequences failed (paho-mqtt installed? `pip install paho-mqtt`):\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paho_suites_sequences_pass_on_a_gateway_alone() {
    let scene = Scene::start(&[], None).await;
    sequences(&scene, "a gateway alone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paho_suites_sequences_pass_on_a_cluster_node() {
    let kafka = MockKafka::new(&[]);
    let scene = Scene::start(&[], Some(kafka.bootstrap())).await;
    sequences(&scene, "a cluster node").await;
}
