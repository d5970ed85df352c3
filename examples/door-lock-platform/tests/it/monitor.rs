//! The monitor raises one alarm per condition on `alarms` and clears it once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::scene::{now_ms, report, state_record, tansu_with_topics, Platform};

#[tokio::test(flavor = "multi_thread")]
async fn low_battery_bad_state_and_silence_raise_one_alarm_each_until_cleared() {
    let tansu = tansu_with_topics().await;
    let monitor = "[monitor]\nreport_interval_secs = 1\nsilent_intervals = 2\nbattery_threshold = 20.0\n";
    let platform = Platform::new(&tansu.bootstrap(), 3, monitor);
    let ts = now_ms();
    tansu.produce(
        "message_state",
        &[
            state_record("L1", report("L1", "1", "report", 50.0, json!(0)), ts),
            state_record("L1", report("L1", "2", "report", 19.0, json!(0)), ts + 1),
            state_record("L1", report("L1", "3", "report", 18.5, json!(0)), ts + 2),
            state_record("L1", report("L1", "4", "report", 95.0, json!(0)), ts + 3),
            state_record("L2", report("L2", "5", "report", 60.0, json!(7)), ts + 4),
            state_record("L2", report("L2", "6", "report", 60.0, json!(9)), ts + 5),
            state_record("L3", report("L3", "7", "report", 60.0, json!(1)), ts + 6),
        ],
    );
    let _monitor = platform.spawn(env!("CARGO_BIN_EXE_monitor"), "monitor", &[]);

    // After 2 s without reports every lock is silent: 3 + 3 alarms in all.
    let alarms = tansu.read("alarms", 6, Duration::from_secs(2));
    let mut got = BTreeMap::new();
    for alarm in &alarms {
        let key = (alarm["lock_id"].as_str().unwrap(), alarm["condition"].as_str().unwrap(), alarm["status"].as_str().unwrap());
        *got.entry(key).or_insert(0) += 1;
    }
    let expected = BTreeMap::from([
        (("L1", "low_battery", "raised"), 1),
        (("L1", "low_battery", "cleared"), 1),
        (("L2", "abnormal_lock_state", "raised"), 1),
        (("L1", "silent", "raised"), 1),
        (("L2", "silent", "raised"), 1),
        (("L3", "silent", "raised"), 1),
    ]);
    assert_eq!(got, expected, "alarms: {alarms:#?}\nlog:\n{}", platform.log("monitor"));
    let low = alarms.iter().find(|a| a["condition"] == "low_battery").unwrap();
    assert_eq!(low["ts"], ts + 1, "a report's alarm carries the report's ts");
    assert!(platform.log("monitor").contains("notify: Owner 2, lock L2: abnormal_lock_state raised"), "owner notified");
}
