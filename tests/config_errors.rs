//! Bad configuration gives a clear error naming the field, and a non-zero exit.

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
