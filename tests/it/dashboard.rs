//! The dashboard in a real headless browser: Debian's chromium, driven by playwright-core
//! through `tests/browser/dashboard.mjs`, while real MQTT clients publish. The script
//! checks the rules table and the rule files that failed to load, the live throughput,
//! the charts of the last minutes (drawn pixels, not only numbers; kept by the server
//! across a page reload), the cluster view, the live tail (payloads as text) and its
//! filters, and takes screenshots (paths printed; the directory is kept for a person to look at).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::QoS;

use crate::support::fixtures::route_rule;
use crate::support::scene::{repo_rules, Device, MockKafka, Scene};

/// Publishing stops after this many rounds even if the browser script hangs.
const MAX_ROUNDS: u32 = 2400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_rules_throughput_and_a_filterable_live_tail() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    assert!(
        Path::new(&chromium).exists(),
        "no chromium at {chromium}: install Debian's package (`apt-get install chromium`; .ci/run does it) or set CHROMIUM_BIN"
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm install --prefix tests/browser --no-package-lock` (.ci/run does it)"
    );

    let state_rule = std::fs::read(repo_rules().join("message_state.wasm")).unwrap();
    let sensor_rule = route_rule("message.publish", "sensors/+", "sensor_data");
    // On Kafka (the mock cluster), so the page shows a cluster (of one node).
    let kafka = MockKafka::new(&["message_state", "sensor_data"]);
    // A rule file that does not compile: the page lists it with the reason.
    let broken: &[u8] = b"(module (func $unfinished";
    let rules: [(&str, &[u8]); 3] = [("message_state.wasm", &state_rule), ("sensor.wat", sensor_rule.as_bytes()), ("broken.wat", broken)];
    let scene = Scene::start_with(&rules, Some(kafka.bootstrap()), |config| config.node = "dashboard-node".into()).await;
    let devices = [
        (Device::connect(scene.addr, "lock-a").await, "devices/lock-a/state"),
        (Device::connect(scene.addr, "lock-b").await, "devices/lock-b/state"),
        (Device::connect(scene.addr, "sensor-1").await, "sensors/sensor-1"),
    ];

    // Publish all the while the browser watches, so the tail has to update live.
    let done = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn({
        let done = done.clone();
        async move {
            for round in 0..MAX_ROUNDS {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                for (device, topic) in &devices {
                    let payload = format!("{{\"seq\":{round},\"battery\":83.4,\"lock_state\":1}}");
                    device.publish(topic, payload, QoS::AtLeastOnce).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            devices
        }
    });

    let screenshots = tempfile::Builder::new().prefix("hookline-dashboard-").tempdir().unwrap().keep();
    let admin = scene.gateway().admin_addr().expect("admin endpoint enabled");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .arg(format!("http://{admin}/"))
        .arg(&screenshots)
        .env("CHROMIUM_BIN", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(180), run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run node ({e}): install Debian's `nodejs` and `npm` (.ci/run does it)"),
        Err(_) => panic!("the browser script did not finish within 180 s"),
    };
    done.store(true, Ordering::Relaxed);
    for (device, _) in publishing.await.unwrap() {
        device.disconnect().await;
    }

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(output.status.success(), "browser script failed ({}):\n{stdout}{stderr}", output.status);
    for name in ["1-unfiltered", "2-topic-filter", "3-topic-and-client-filter"] {
        let path = screenshots.join(format!("{name}.png"));
        assert!(stdout.contains(&format!("screenshot: {}", path.display())), "{name} not taken:\n{stdout}");
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{} is not a PNG", path.display());
    }
}
