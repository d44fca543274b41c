//! The fault-matrix suite (issue 6): every scenario in `conf/scenarios/`
//! runs through `endotower scenario run`, exactly as a user runs it, one at a
//! time (they share two cores with nothing else), and must pass. A broken
//! build, the safety island disabled by its test-only switch, must fail the
//! over-pressure scenario. docs/fault-matrix.md lists the rows.

mod common;

use endotower::scenario::file::Scenario;
use endotower::scenario::runner::{run_and_report, RunOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Scenarios each start a whole tower: never two at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/scenarios")
}

fn out_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scenarios").join(name)
}

/// Run one scenario file through the command line; `Err` carries its failures.
fn run_cli(file: &Path) -> Result<String, String> {
    let name = file.file_stem().unwrap().to_string_lossy().to_string();
    let out = out_dir(&name);
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_endotower"))
        .args(["scenario", "run"])
        .arg(file)
        .arg("--out")
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run endotower");
    // A hung tower must fail the suite, not stall CI: no scenario takes
    // anywhere near this long (the soak: about 2 minutes).
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while child.try_wait().expect("wait for endotower").is_none() {
        if std::time::Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name}: still running after 600 s (hung), killed"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = child.wait_with_output().expect("collect endotower output");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    if o.status.success() {
        Ok(stdout)
    } else {
        let tail: String = String::from_utf8_lossy(&o.stderr).lines().rev().take(5).collect::<Vec<_>>().join("\n");
        let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
        Err(format!("{name}: exit {:?}\n  {}\n  stderr tail: {tail}", o.status.code(), fails.join("\n  ")))
    }
}

#[test]
fn every_fault_matrix_scenario_passes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.file_stem().is_some_and(|s| s != "soak"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "the fault matrix has {} scenarios", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let started = std::time::Instant::now();
        match run_cli(f) {
            Ok(_) => eprintln!("pass {} ({:.0} s)", f.display(), started.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!("FAIL {e}");
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} scenarios failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn soak_one_hour_procedure_with_random_faults_keeps_every_promise() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let stdout = run_cli(&scenarios_dir().join("soak.toml")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir("soak").join("report.json")).unwrap()).unwrap();
    assert_eq!(report["simulated_s"], 3600.0);
    assert!(report["counts"]["faults"].as_u64().unwrap() >= 30, "a fault about once a minute: {}", report["counts"]);
    assert!(report["counts"]["interlock_trips"].as_u64().unwrap() > 0, "the soak must exercise the interlocks");
}

/// The benchmark scenarios (`conf/scenarios/bench/`, run by hand for
/// BENCHMARKS.md) stay loadable as the file format evolves.
#[test]
fn benchmark_scenarios_load() {
    let dir = scenarios_dir().join("bench");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            Scenario::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "{n} benchmark scenarios in {}", dir.display());
}

/// HZ-001/HZ-002: the scenario suite notices a build whose safety island does
/// not act. The island keeps cycling and beating the devices' heartbeat, but
/// writes no interlock: the hung control actor cannot vent the surge, so the
/// over-pressure scenario must fail on exactly the safety invariants.
#[test]
fn hz001_a_build_with_the_safety_island_disabled_fails_the_over_pressure_scenario() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    common::init_logs();
    let s = Scenario::load(&scenarios_dir().join("over-pressure.toml")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let run = |broken: bool| {
        let out = out_dir(if broken { "over-pressure-broken-island" } else { "over-pressure-intact-island" });
        let opts = RunOptions { seed: None, out, realtime: false, progress: false, break_safety_island: broken };
        rt.block_on(run_and_report(&s, &opts)).unwrap()
    };
    let broken = run(true);
    assert!(!broken.pass, "the broken build passed the over-pressure scenario");
    let failed: Vec<&str> = broken.invariants.iter().filter(|o| !o.pass).map(|o| o.invariant.as_str()).collect();
    for must in ["interlocks_not_missed", "pressure_below", "alarm_raised"] {
        assert!(failed.iter().any(|f| f.starts_with(must)), "{must} should fail with the island disabled; failed: {failed:?}");
    }
    // The same scenario with the island intact passes: the switch is the difference.
    let intact = run(false);
    let failed: Vec<&str> = intact.invariants.iter().filter(|o| !o.pass).map(|o| o.invariant.as_str()).collect();
    assert!(intact.pass, "the intact build failed: {failed:?}");
}
