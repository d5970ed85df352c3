//! The notifier turns unlock reports into one webhook POST each, retrying a failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::scene::{now_ms, report, state_record, tansu_with_topics, wait_for, Platform};

/// Every request body the webhook got, and how many it refused on purpose.
#[derive(Default)]
struct Hook {
    bodies: Vec<Value>,
    refused: usize,
}

/// A webhook at a free local port that answers 500 to the first request and 200 after.
async fn webhook() -> (String, Arc<Mutex<Hook>>) {
    let hook = Arc::new(Mutex::new(Hook::default()));
    let seen = hook.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let mut hook = seen.lock().unwrap();
                if hook.refused == 0 {
                    hook.refused += 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                hook.bodies.push(serde_json::from_slice(&body).expect("webhook body is JSON"));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hook)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_unlock_report_becomes_one_webhook_notification_after_a_retry() {
    let tansu = tansu_with_topics().await;
    let (url, hook) = webhook().await;
    let channel = format!("[channel]\nkind = \"webhook\"\nwebhook_url = \"{url}\"\nwebhook_backoff_ms = 50\n");
    let platform = Platform::new(&tansu.bootstrap(), 2, &channel);
    let ts = now_ms();
    tansu.produce(
        "message_state",
        &[
            state_record("L1", report("L1", "p-report", "report", 90.0, json!(0)), ts),
            state_record("L1", report("L1", "p-unlock-1", "unlock", 89.9, json!(1)), ts + 1),
            state_record("L2", report("L2", "p-refused", "unlock", 70.0, json!(0)), ts + 2),
            state_record("L2", report("L2", "p-unlock-2", "unlock", 69.9, json!(1)), ts + 3),
            state_record("L9", report("L9", "p-unknown", "unlock", 50.0, json!(1)), ts + 4),
        ],
    );
    let _notifier = platform.spawn(env!("CARGO_BIN_EXE_notifier"), "notifier", &[]);

    let two = wait_for(Duration::from_secs(20), || hook.lock().unwrap().bodies.len() >= 2).await;
    assert!(two, "expected 2 notifications; log:\n{}", platform.log("notifier"));
    // Anything extra (a duplicate, or one for the unknown lock) would arrive meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hook = hook.lock().unwrap();
    assert_eq!(hook.refused, 1);
    let got: Vec<(&str, &str, i64)> =
        hook.bodies.iter().map(|b| (b["lock_id"].as_str().unwrap(), b["contact"].as_str().unwrap(), b["ts"].as_i64().unwrap())).collect();
    assert_eq!(got, [("L1", "owner-L1@example.org", ts + 1), ("L2", "owner-L2@example.org", ts + 3)]);
    assert!(hook.bodies[0]["text"].as_str().unwrap().contains("p-unlock-1"), "{:?}", hook.bodies[0]);
    let log = platform.log("notifier");
    assert!(log.contains("webhook failed; retrying"), "the failure is logged:\n{log}");
    assert!(log.contains("no owner on file") && log.contains("L9"), "the unknown lock is logged:\n{log}");
}
