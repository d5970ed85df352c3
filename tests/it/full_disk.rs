//! A spool write that fails leaves every publish it held unacknowledged: the spool
//! reports the failure instead of dropping the frames, the gateway closes the
//! connection without a PUBACK and counts the failure, and once there is room again the
//! device's resend is acknowledged and delivered. The failing disk is real: a 256 KiB
//! tmpfs, filled up. Mounting it needs root, which CI has.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hookline::config::{BufferConfig, Fsync, WhenFull};
use hookline::hooks::{Hook, HookEvent};
use hookline::metrics::Metrics;
use hookline::spool::{Push, ReadBatch, Spool, SpoolBatch};
use rumqttc::{Packet, QoS};

use crate::support::fixtures::route_rule;
use crate::support::scene::{Device, Scene};

/// A 256 KiB tmpfs mounted on a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            output.status.success(),
            "cannot mount a tmpfs on {}: {}. This test needs a disk that really fills up: run it as root (as CI does) or with CAP_SYS_ADMIN",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes a file until the file system has no room left.
    fn fill(&self) {
        let mut filler = File::create(self.filler()).unwrap();
        loop {
            match filler.write(&[0; 4096]) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::StorageFull => return,
                Err(e) => panic!("filling {}: {e}", self.filler().display()),
            }
        }
    }

    fn make_room(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a gateway winding down may still hold a segment file open.
        let unmounted = Command::new("umount").arg("--lazy").arg(self.path()).status();
        if !unmounted.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("could not unmount the tmpfs on {}: {unmounted:?}", self.path().display());
        }
    }
}

fn publish(seq: usize) -> HookEvent {
    let mut event = HookEvent::new(Hook::MessagePublish, "lock-1".into(), "".into());
    event.topic = "devices/lock-1/state".into();
    event.payload = format!("{{\"seq\":{seq}}}").into();
    event.qos = 1;
    event
}

#[test]
fn a_failed_spool_write_is_reported_and_none_of_the_frames_it_held_is_read_back() {
    let disk = SmallDisk::mount();
    let metrics = Arc::new(Metrics::default());
    let config = BufferConfig {
        dir: Some(disk.path().join("spool")),
        max_bytes: 8192,
        segment_bytes: 4096,
        fsync: Fsync::Never,
        when_full: WhenFull::Backpressure,
        ..BufferConfig::default()
    };
    let (spool, mut readers) = Spool::open(&config, disk.path(), 1, metrics.clone()).unwrap();
    disk.fill();

    assert_eq!(spool.push(0, &publish(0)), Push::Rejected, "an event pushed onto the full disk");
    // Staging past the budget writes what the batch holds first; that write fails.
    let mut batch = SpoolBatch::default();
    let mut staged = 0;
    let failure = loop {
        assert!(staged < 1000, "1000 events staged and no write reported, with an 8 KiB budget on a full disk");
        match spool.stage(&mut batch, 0, &publish(1 + staged)) {
            Ok(Push::Written) => staged += 1,
            Ok(other) => panic!("event {staged} staged as {other:?}"),
            Err(failure) => break failure,
        }
    };
    assert_eq!(failure.kind(), io::ErrorKind::StorageFull, "{failure}");
    assert!(batch.is_empty(), "the batch still holds {} bytes after its write failed", batch.len());
    assert_eq!(Metrics::get(&metrics.spool_write_errors), 2);

    disk.make_room();
    let after = 1 + staged + 1;
    assert_eq!(spool.stage(&mut batch, 0, &publish(after)).unwrap(), Push::Written);
    spool.flush(&mut batch).unwrap();
    let mut read = ReadBatch::new();
    readers[0].read(&mut read, &metrics).unwrap();
    let payloads: Vec<_> = read.iter().map(|(event, _)| String::from_utf8_lossy(&event.payload).into_owned()).collect();
    assert_eq!(payloads, [format!("{{\"seq\":{after}}}")], "only the event written after room was made is read back");
    eprintln!(
        "staged before the failed write: {staged}, spool_write_errors: {}, damaged records read: {}",
        Metrics::get(&metrics.spool_write_errors),
        Metrics::get(&metrics.spool_damaged_records)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_full_disk_cannot_hold_is_not_acknowledged_and_its_resend_is_once_there_is_room() {
    let disk = SmallDisk::mount();
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let spool_dir = disk.path().join("spool");
    let mut scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| config.buffer.dir = Some(spool_dir)).await;
    let mut lock = Device::connect(scene.addr, "lock-1").await;
    disk.fill();

    // A client connecting now is turned away: its connection could not be recorded.
    let mut late = crate::support::raw_mqtt::RawClient::open(scene.addr).await;
    late.send(&crate::support::raw_mqtt::connect(4, "lock-2", true, 30)).await;
    assert_eq!(late.receive().await, Some((0x20, vec![0, 0x03])), "CONNACK 0x03 server unavailable");
    assert_eq!(scene.counter("mqtt_refused_unavailable"), 1);

    let before_publish = scene.counter("spool_write_errors");
    // Larger than a page: the segment's last page, partly used, cannot hold it.
    let report = "locked".repeat(1500);
    lock.publish("devices/lock-1/state", report.clone(), QoS::AtLeastOnce).await;
    let mut answers = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(packet) = lock.acks.recv().await {
            answers.push(packet);
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open 10 s after a publish the spool could not write; got {answers:?}");
    assert!(!answers.iter().any(|p| matches!(p, Packet::PubAck(_))), "a publish the spool could not write was acknowledged: {answers:?}");
    let after_publish = scene.counter("spool_write_errors");
    assert!(
        after_publish > before_publish,
        "the failed write of the publish is not counted: {before_publish} before, {after_publish} after"
    );

    disk.make_room();
    let mut lock = Device::connect(scene.addr, "lock-1").await;
    lock.publish("devices/lock-1/state", report.clone(), QoS::AtLeastOnce).await;
    lock.wait_pubacks(1).await;
    lock.disconnect().await;
    let metrics = scene.gateway().metrics().clone();
    scene.shutdown().await;
    let records = scene.file_records(1).await;
    let states: Vec<_> = records.iter().filter(|r| r["topic"] == "message_state").collect();
    assert_eq!(states.len(), 1, "the resend is delivered once: {records:#?}");
    assert_eq!(states[0]["value"]["payload"], base64::engine::general_purpose::STANDARD.encode(&report));
    eprintln!(
        "spool_write_errors: {before_publish} after connecting to the full disk, {after_publish} after the publish, {} at the end; damaged records read: {}",
        Metrics::get(&metrics.spool_write_errors),
        Metrics::get(&metrics.spool_damaged_records)
    );
}
