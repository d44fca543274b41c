//! Bad configuration gives a clear error naming the field, and a non-zero exit.

use endotower::tower_config::TowerConfig;
use endotower_actors::config::Transport;
use std::process::Command;

fn endotower(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_endotower"));
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

fn write_conf(name: &str, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tower.toml")).unwrap();
    assert!(text.contains(from), "fixture text {from:?} not in conf/tower.toml");
    let p = std::env::temp_dir().join(format!("endotower-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, text.replace(from, to)).unwrap();
    p
}

#[test]
fn shipped_config_checks_ok() {
    let (ok, out) = endotower(&["check-config", "conf/tower.toml"], &[]);
    assert!(ok, "{out}");
}

#[test]
fn out_of_range_value_names_field_value_and_expectation() {
    let p = write_conf("range", "period_us = 2000", "period_us = 10");
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("`safety.period_us` = 10: expected an integer in 500 ..= 100000 us"), "{out}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn wrong_type_and_typo_name_the_field_path() {
    let p = write_conf("type", "poll_hz = 50.0\nintensity_pct = 80.0", "poll_hz = \"fast\"\nintensity_pct = 80.0");
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("devices.light.poll_hz"), "{out}");
    let _ = std::fs::remove_file(p);
    let p = write_conf("typo", "stale_ms = 20", "stale_msec = 20");
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("stale_msec"), "{out}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn environment_override_is_validated_like_the_file() {
    let (ok, out) = endotower(&["check-config", "conf/tower.toml"], &[("ENDOTOWER__DEVICES__INSUFFLATOR__SET_PRESSURE_MMHG", "35")]);
    assert!(!ok);
    assert!(out.contains("`devices.insufflator.set_pressure_mmhg` = 35"), "{out}");
    let (ok, out) = endotower(&["check-config", "conf/tower.toml"], &[("ENDOTOWER__DEVICES__INSUFFLATOR__SET_PRESSURE_MMHG", "14")]);
    assert!(ok, "{out}");
}

#[test]
fn missing_config_file_is_a_clear_error_not_a_panic() {
    let (ok, out) = endotower(&["run", "--config", "/nonexistent/tower.toml"], &[]);
    assert!(!ok);
    assert!(out.contains("/nonexistent/tower.toml") && out.contains("no such file"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[cfg(not(feature = "v4l2"))]
#[test]
fn a_v4l2_source_in_a_build_without_the_feature_says_how_to_get_it() {
    let p = write_conf(
        "v4l2",
        "kind = \"synthetic\", width = 1280, height = 720, fps = 60.0, seed = 1",
        "kind = \"v4l2\", device = \"/dev/video0\", width = 1280, height = 720, fps = 60.0",
    );
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("`video.source.kind`") && out.contains("--features v4l2"), "{out}");
    let _ = std::fs::remove_file(p);
}

/// Issue 14: `--duration-s 1e20` panicked and `NaN` ran for 0 s.
#[test]
fn a_run_duration_that_is_not_a_sane_number_of_seconds_is_refused_before_anything_starts() {
    for bad in ["1e20", "NaN", "-3", "0", "inf", "ten"] {
        let (ok, out) = endotower(&["run", &format!("--duration-s={bad}")], &[]);
        assert!(!ok, "--duration-s {bad} accepted");
        assert!(out.contains("--duration-s") && out.contains(bad), "{bad}: {out}");
    }
}

/// A crash loop must be able to reach its supervisor's intensity limit.
#[test]
fn a_backoff_cap_that_keeps_a_crash_loop_below_the_intensity_limit_is_refused() {
    let p = write_conf(
        "unreachable",
        "[supervision.children.insufflator]\nrestart = \"permanent\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000",
        "[supervision.children.insufflator]\nrestart = \"permanent\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 2000",
    );
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("supervision.children.insufflator.backoff_max_ms") && out.contains("supervision.devices.max_restarts"), "{out}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn a_status_hang_timeout_not_above_the_status_interval_is_refused() {
    let p = write_conf("status-hang", "status_interval_ms = 1000", "status_interval_ms = 5000");
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("supervision.children.status.hang_timeout_ms"), "{out}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn a_root_that_would_fail_upwards_at_a_meltdown_is_refused() {
    let p = write_conf("root", "meltdown = \"safe_state_and_contain\"", "meltdown = \"safe_state\"");
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("supervision.root.meltdown"), "{out}");
    let _ = std::fs::remove_file(p);
}

/// One master per serial line: the island's line cannot carry a device
/// actor too, and two device actors cannot share one.
#[test]
fn a_serial_line_shared_by_the_island_and_a_device_actor_is_refused() {
    let p = write_conf(
        "shared-line",
        "[devices.insufflator.link]\nunit = 1\ntimeout_ms = 50\ntransport = { kind = \"tcp\", addr = \"127.0.0.1:15021\" }",
        "[devices.insufflator.link]\nunit = 1\ntimeout_ms = 50\ntransport = { kind = \"rtu\", path = \"/dev/ttyUSB0\", baud = 4000000 }",
    );
    // The island would reach the insufflator on the same line by default.
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("devices.insufflator.link.transport.path") && out.contains("safety.insufflator uses it"), "{out}");
    // Its own line for the island's insufflator link, but the light's island
    // link put on the device actor's line.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(
            "[safety.insufflator]\nbackoff_initial_ms = 5",
            "[safety.insufflator]\ntransport = { kind = \"rtu\", path = \"/dev/ttyUSB1\", baud = 4000000 }\nbackoff_initial_ms = 5",
        )
        .replace(
            "[safety.light]\nbackoff_initial_ms = 5\nbackoff_max_ms = 100\n",
            "[safety.light]\nbackoff_initial_ms = 5\nbackoff_max_ms = 100\ntransport = { kind = \"rtu\", path = \"/dev/ttyUSB0\", baud = 4000000 }\n",
        );
    assert!(text.contains("path = \"/dev/ttyUSB0\", baud = 4000000 }\n\n[safety.camera]"), "fixture did not apply");
    std::fs::write(&p, text).unwrap();
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("devices.insufflator.link.transport.path") && out.contains("safety.light uses it"), "{out}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn an_island_serial_line_too_slow_for_its_request_timeout_is_refused() {
    let p = write_conf(
        "slow-line",
        "[safety.light]\nbackoff_initial_ms = 5\nbackoff_max_ms = 100\n",
        "[safety.light]\nbackoff_initial_ms = 5\nbackoff_max_ms = 100\ntransport = { kind = \"rtu\", path = \"/dev/ttyUSB1\", baud = 115200 }\n",
    );
    let (ok, out) = endotower(&["check-config", p.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("safety.light.transport.baud") && out.contains("115200"), "{out}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn the_environment_switches_to_an_external_broker_and_sets_list_keys() {
    let external = [
        ("ENDOTOWER__TELEMETRY__BROKER__KIND", "external"),
        ("ENDOTOWER__TELEMETRY__BROKER__HOST", "mqtt.hospital.lan"),
        ("ENDOTOWER__TELEMETRY__BROKER__PORT", "8883"),
    ];
    let (ok, out) = endotower(&["check-config", "conf/tower.toml"], &external);
    assert!(ok, "{out}");
    // Without its host, the external kind names the missing field.
    let (ok, out) = endotower(&["check-config", "conf/tower.toml"], &external[..1]);
    assert!(!ok);
    assert!(out.contains("telemetry.broker.host"), "{out}");
    // A list from the environment parses; remote control then needs an
    // authenticating broker, and the error says so.
    let remote = [("ENDOTOWER__TELEMETRY__REMOTE__ENABLED", "true"), ("ENDOTOWER__TELEMETRY__REMOTE__ALLOWED_CLIENTS", "hmi-1,hmi-2")];
    let (ok, out) = endotower(&["check-config", "conf/tower.toml"], &remote);
    assert!(!ok);
    assert!(out.contains("telemetry.broker.password_file"), "{out}");
}

#[test]
fn a_device_address_is_written_once_for_the_control_plane_and_the_island() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tower.toml")).unwrap();
    let moved = text.replace("addr = \"127.0.0.1:15022\"", "addr = \"10.0.0.5:502\"");
    assert_ne!(moved, text, "fixture did not apply");
    let cfg = TowerConfig::from_toml(&moved).unwrap();
    let want = Transport::Tcp { addr: "10.0.0.5:502".into() };
    assert_eq!((&cfg.devices.light.link.transport, &cfg.safety.light.transport), (&want, &want));
    assert_eq!(cfg.safety.light.unit, cfg.devices.light.link.unit);
    // The island may still have a line of its own.
    let own = moved.replace(
        "[safety.light]\nbackoff_initial_ms = 5",
        "[safety.light]\ntransport = { kind = \"tcp\", addr = \"10.0.0.6:502\" }\nunit = 9\nbackoff_initial_ms = 5",
    );
    let cfg = TowerConfig::from_toml(&own).unwrap();
    assert_eq!((cfg.safety.light.transport.clone(), cfg.safety.light.unit), (Transport::Tcp { addr: "10.0.0.6:502".into() }, 9));
    assert_eq!(cfg.devices.light.link.transport, want);
    // One environment variable per device moves both.
    let (ok, out) =
        endotower(&["check-config", "conf/tower.toml"], &[("ENDOTOWER__DEVICES__LIGHT__LINK__TRANSPORT__ADDR", "not-an-address")]);
    assert!(!ok && out.contains("devices.light.link.transport.addr"), "{out}");
}

#[test]
fn the_default_config_is_found_from_any_working_directory() {
    let elsewhere = std::env::temp_dir().join(format!("endotower-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_endotower")).arg("check-config").current_dir(&elsewhere).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("conf/tower.toml: ok"), "{stdout}");
    assert!(stderr.contains(&format!("working in {}", env!("CARGO_MANIFEST_DIR"))), "it says where it works: {stderr}");
    let _ = std::fs::remove_dir_all(&elsewhere);
}
