//! The `hookline run` command-line contract: flags, HOOKLINE_* variables, config file,
//! one-line errors, and a clean exit on SIGTERM.

use std::process::Command;
use std::time::Duration;

use rumqttc::QoS;

use crate::support::scene::{shipped_rules, wait_for, Device, GatewayBinary};

fn hookline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookline"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_routes_to_the_file_sink_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for (name, content) in shipped_rules() {
        std::fs::write(rules.join(name), content).unwrap();
    }
    // Flags and HOOKLINE_* variables together: both are read.
    let mut gateway = GatewayBinary::start_with(dir.path(), |command| {
        command
            .arg("--rules")
            .arg(&rules)
            .arg("--data")
            .arg(dir.path().join("data"))
            .env("HOOKLINE_LISTEN", "127.0.0.1:0")
            .env("HOOKLINE_NODE", "gateway@test")
            .env("HOOKLINE_ADMIN", "127.0.0.1:0")
            .env("HOOKLINE_ALLOW_ANONYMOUS", "true");
    })
    .await;
    let mut lock = Device::connect(gateway.addr, "lock-cli").await;
    lock.publish("devices/lock-cli/state", "{}", QoS::AtLeastOnce).await;
    lock.wait_pubacks(1).await;

    let records = dir.path().join("data/records.jsonl");
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(&records).is_ok_and(|t| t.lines().count() == 1)).await,
        "one record in {}",
        records.display()
    );
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&records).unwrap().trim()).unwrap();
    assert_eq!(line["topic"], "message_state");
    assert_eq!(line["key"], "lock-cli");
    assert_eq!(line["value"]["node"], "gateway@test");

    gateway.signal("-TERM");
    let exit = gateway.wait_exit(Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status {exit:?}");
}

fn fails_with(args: &[&str], expected: &str) {
    let output = hookline().args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(expected), "{args:?}: stderr {stderr:?} should mention {expected:?}");
}

#[test]
fn a_bad_flag_value_names_the_flag() {
    fails_with(&["run", "--listen", "not-an-address"], "--listen");
}

/// Runs `hookline run --config FILE` with `toml` as the file; returns its stderr.
fn run_with_config(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookline.toml");
    std::fs::write(&config, toml).unwrap();
    let output = hookline().args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(!output.status.success(), "config {toml:?} should be refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_unknown_config_key_names_the_key_on_one_line() {
    let stderr = run_with_config("[broker]\nlisten_addr = \"0.0.0.0:1883\"\n");
    assert!(stderr.contains("listen_addr"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn an_invalid_config_value_names_the_key() {
    let stderr = run_with_config("[rules]\ncall_fuel = 0\n");
    assert!(stderr.contains("rules.call_fuel"), "{stderr}");
}

#[test]
fn kafka_servers_in_a_config_file_without_a_sink_kind_are_refused_with_the_fix() {
    let stderr = run_with_config("[auth]\nanonymous = true\n\n[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n");
    assert!(stderr.contains("sink.kind") && stderr.contains("[sink] kind = \"kafka\""), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn rule_check_prints_the_subscriptions_of_a_shipped_rule() {
    let output = hookline().args(["rule", "check"]).arg(crate::support::scene::repo_rules().join("message_state.wasm")).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("message.publish devices/+/state"), "{stdout}");
}

#[test]
fn rule_check_refuses_a_broken_module_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"junk").unwrap();
    let output = hookline().args(["rule", "check"]).arg(&path).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("junk.wasm"));
}

#[test]
fn rule_test_routes_the_scenario_and_fails_on_a_trap() {
    let output = hookline().args(["rule", "test"]).arg(crate::support::scene::repo_rules().join("message_state.wasm")).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("-> message_state key=10083618796833171"), "{stdout}");
    assert!(stdout.contains("11 events: 2 routed, 0 published, 0 rejected, 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trap.wat");
    std::fs::write(&path, crate::support::fixtures::trap_rule("devices/+/state")).unwrap();
    let output = hookline().args(["rule", "test"]).arg(&path).output().unwrap();
    assert!(!output.status.success(), "a trapping rule fails the test run");
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAILED: rule trapped"));
}

#[test]
fn rule_test_fails_a_rule_whose_route_the_host_refused_and_names_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let (returned, ignored) = (
        crate::support::fixtures::route_rule_returning_code("battery low!"),
        crate::support::fixtures::route_rule("message.publish", "devices/+/state", "battery low!"),
    );
    for rule in [returned, ignored] {
        let path = dir.path().join("battery_low.wat");
        std::fs::write(&path, rule).unwrap();
        let output = hookline().args(["rule", "test"]).arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "an invalid route fails the run, whether the rule returns its code or not: {stdout}");
        assert!(stdout.contains("(-6 = not a valid Kafka topic name"), "{stdout}");
        assert!(stdout.contains("2 failed"), "{stdout}");
    }
    let path = dir.path().join("battery_low.wat");
    std::fs::write(&path, crate::support::fixtures::route_rule_returning_code("battery_low")).unwrap();
    let output = hookline().args(["rule", "test"]).arg(&path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn rule_test_publishes_a_command_record_with_the_shipped_downlink_rule_and_counts_a_keyless_one() {
    let rule = crate::support::scene::repo_rules().join("device_commands.wasm");
    let output = hookline().args(["rule", "check"]).arg(&rule).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("(ABI v2)") && stdout.contains("kafka.record device_commands"), "{stdout}");

    // The built-in scenario: one command record with the lock id as key, one without.
    let output = hookline().args(["rule", "test"]).arg(&rule).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "a rejected record is counted, not a failure: {stdout}");
    assert!(stdout.contains("=> MQTT devices/10083618796833171/command qos=1 retain=false payload=the record's value"), "{stdout}");
    assert!(stdout.contains("11 events: 0 routed, 1 published, 1 rejected, 0 failed"), "{stdout}");

    // An events file with every kafka.record field: binary value, headers, partition,
    // offset; records of another topic never enter the rule.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("records.jsonl");
    let lines = [
        r#"{"hook":"kafka.record","topic":"device_commands","key":"lock-7","value_base64":"AP8=","headers":[["sign","e9f5"]],"partition":2,"offset":17}"#,
        r#"{"hook":"kafka.record","topic":"device_commands","key":"a/b","value":"{}","partition":2,"offset":18}"#,
        r#"{"hook":"kafka.record","topic":"other_commands","key":"lock-7","value":"{}"}"#,
    ];
    std::fs::write(&events, lines.join("\n")).unwrap();
    let output = hookline().args(["rule", "test"]).arg(&rule).arg("--events").arg(&events).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("#1 kafka.record device_commands (partition 2, offset 17, key \"lock-7\")"), "{stdout}");
    assert!(stdout.contains("=> MQTT devices/lock-7/command qos=1 retain=false payload=the record's value, 2 bytes"), "{stdout}");
    assert!(stdout.contains("3 events: 0 routed, 1 published, 1 rejected, 0 failed"), "{stdout}");
}

/// `rule new` then `rule test` on the result: the scaffold is a working rule.
fn scaffold_and_test(lang: &str, build: impl FnOnce(&std::path::Path) -> std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let output = hookline().args(["rule", "new", lang, "door_events", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let project = dir.path().join("door_events");
    assert!(project.join("README.md").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(project.join("build.sh")).unwrap().permissions());
    assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
    let module = build(&project);
    let output = hookline().args(["rule", "test"]).arg(&module).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("-> door_events key=10083618796833171"), "{stdout}");

    let again = hookline().args(["rule", "new", lang, "door_events", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(!again.status.success(), "never overwrites a project");
}

#[test]
fn rule_new_wat_scaffolds_a_working_rule() {
    scaffold_and_test("wat", |project| project.join("door_events.wat"));
}

#[test]
fn rule_new_rust_scaffolds_a_rule_that_builds_as_is() {
    scaffold_and_test("rust", |project| {
        // The toolchain rules/build.sh settles on (CI installs it before the tests):
        // rustup's with the wasm32 target, else Debian's.
        let has_wasm_std = |rustc: &str| {
            Command::new(rustc).args(["--print", "sysroot"]).output().is_ok_and(|o| {
                std::path::Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("lib/rustlib/wasm32-unknown-unknown").exists()
            })
        };
        let (path, rustc) = match has_wasm_std("rustc") {
            true => (std::env::var("PATH").unwrap(), "rustc"),
            false => (format!("/usr/bin:{}", std::env::var("PATH").unwrap()), "/usr/bin/rustc"),
        };
        let status = Command::new("sh")
            .arg(project.join("build.sh"))
            .env("CARGO_TARGET_DIR", project.join("target"))
            .env("PATH", path)
            .env("RUSTC", rustc)
            .status()
            .unwrap();
        assert!(status.success(), "the scaffolded Rust rule builds (needs the wasm32-unknown-unknown target)");
        project.join("door_events.wasm")
    });
}

#[test]
fn rule_new_c_scaffolds_a_rule_that_builds_with_the_clang_it_finds() {
    scaffold_and_test("c", |project| {
        let status = Command::new(project.join("build.sh")).status().unwrap();
        assert!(status.success(), "the scaffolded C rule builds (needs clang and lld)");
        project.join("door_events.wasm")
    });
}

#[test]
fn a_scaffolds_build_script_names_a_missing_toolchain_and_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, says) in [("rust", "install Rust with rustup"), ("c", "apt-get install clang lld"), ("zig", "pip install ziglang")] {
        let output = hookline().args(["rule", "new", lang, "door_events", "--dir"]).arg(dir.path().join(lang)).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // A PATH with a shell and nothing else.
        let bare = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/bin/sh", bare.path().join("sh")).unwrap();
        let output = Command::new("/bin/sh")
            .arg(dir.path().join(lang).join("door_events/build.sh"))
            .env("PATH", bare.path())
            .env_remove("CC")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(says), "{lang}: {stderr}");
    }
}

#[test]
fn rule_new_refuses_a_name_that_is_not_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let output = hookline().args(["rule", "new", "c", "Bad Name", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("lower-case"));
}
