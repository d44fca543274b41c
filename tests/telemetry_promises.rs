//! What docs/mqtt.md promises, checked from outside: every message is read
//! by mosquitto_sub and every command sent by mosquitto_pub (no code shared
//! with the tower's MQTT client), the tower runs as an `endotower run`
//! process where starts, stops and kills matter, and the brokers are
//! Debian's mosquitto or the tower's embedded one.

mod common;

use common::mqtt::{publish_file, publish_lines, root, Access, Mosquitto, Sub, TempDir};
use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower::tower_config::TowerConfig;
use endotower_actors::events::Severity;
use endotower_actors::telemetry::config::BrokerConfig;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::block_in_place;

fn telemetry_config(port: u16, journal: &Path) -> TowerConfig {
    let mut cfg = common::mqtt::telemetry_config(port, journal);
    cfg.telemetry.backoff_max_ms = 500;
    cfg
}

/// `endotower run` on `cfg` (written to `dir/tower.toml`).
fn run_tower(cfg: &TowerConfig, dir: &Path) -> Child {
    let file = dir.join("tower.toml");
    std::fs::write(&file, toml::to_string(cfg).unwrap()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_endotower"))
        .arg("run")
        .arg("--config")
        .arg(&file)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// The retained birth and death, read by a fresh subscriber: (birth bd_seq, death bd_seq).
fn retained_pair(a: &Access, root: &str) -> (Option<u64>, Option<u64>) {
    let sub = Sub::start(a, None, &[format!("{root}/birth"), format!("{root}/death")]);
    let (mut birth, mut death) = (None, None);
    while let Some(m) = sub.next(Duration::from_secs(2), |m| m.retain) {
        let seq = m.body["bd_seq"].as_u64();
        if m.topic.ends_with("/birth") {
            birth = seq;
        } else {
            death = seq;
        }
        if birth.is_some() && death.is_some() {
            break;
        }
    }
    (birth, death)
}

/// HZ-016. Twenty starts and clean stops of the tower process: no death
/// while a session lives (none at start-up), a `shutdown` death at every
/// clean stop, `bd_seq` growing by session, and a retained birth/death pair
/// that reads "alive" while the tower runs and "gone" after it stopped.
#[test]
fn hz016_bd_seq_grows_across_restarts_with_no_death_at_start_and_one_at_every_clean_stop() {
    let broker = Mosquitto::start(false);
    let dir = TempDir::new("starts");
    let cfg = telemetry_config(broker.port, &dir.join("journal"));
    let root = root(&cfg);
    let a = broker.access();
    let sub = Sub::start(&a, None, &[format!("{root}/birth"), format!("{root}/death")]);
    let mut last_seq = 0;
    for run in 0..20 {
        let mut tower = run_tower(&cfg, &dir.0);
        let birth = sub.next(Duration::from_secs(30), |m| m.topic.ends_with("/birth") && !m.retain);
        let Some(birth) = birth else {
            let _ = tower.kill();
            panic!("start {run}: no birth");
        };
        let seq = birth.body["bd_seq"].as_u64().unwrap();
        assert!(seq > last_seq, "start {run}: bd_seq {seq} after {last_seq}");
        // Alive: the retained death is the previous session's.
        let (b, d) = retained_pair(&a, &root);
        assert_eq!(b, Some(seq), "start {run}: retained birth");
        assert!(d.is_none_or(|d| d < seq), "start {run}: retained death {d:?} would say the running tower is gone (birth {seq})");
        sigterm(&tower);
        let death = sub.next(Duration::from_secs(30), |m| m.topic.ends_with("/death") && !m.retain);
        let status = tower.wait().unwrap();
        let death = death.unwrap_or_else(|| panic!("start {run}: no death at the clean stop"));
        assert_eq!(death.body["reason"], "shutdown", "start {run}: {}", death.body);
        assert_eq!(death.body["bd_seq"].as_u64(), Some(seq), "start {run}: the death ends its own session");
        assert!(status.success(), "start {run}: exit {status}");
        // Gone: birth and death agree.
        assert_eq!(retained_pair(&a, &root), (Some(seq), Some(seq)), "start {run}: retained pair after the stop");
        last_seq = seq;
    }
    // Nothing else came: not one `connection_lost` in 20 sessions.
    let extra: Vec<Value> = sub.drain().into_iter().filter(|m| !m.retain).map(|m| m.body).collect();
    assert!(extra.is_empty(), "births or deaths beyond one pair per session: {extra:?}");
}

/// An in-process tower with remote control behind mosquitto with TLS, a
/// password file and the ACL.
async fn remote_tower(dir: &TempDir, broker: &Mosquitto) -> Tower {
    let mut cfg = telemetry_config(broker.port, &dir.join("journal"));
    let t = &mut cfg.telemetry;
    t.remote.enabled = true;
    t.remote.allowed_clients = vec!["hmi".into()];
    t.broker.username = Some("tower".into());
    t.broker.password = Some(common::mqtt::password("tower"));
    t.broker.ca_file = broker.ca.as_ref().map(|c| c.ca.clone());
    let tower = Tower::start(cfg).await.unwrap();
    let stats = tower.telemetry().unwrap().stats.clone();
    assert!(wait_for(Duration::from_secs(20), || stats.births.load(Ordering::Relaxed) > 0).await, "the tower never connected");
    tower
}

/// HZ-017. 2000 bad commands from one client in about a second: each one
/// is answered, or refused unread for its rate and counted in telemetry;
/// telemetry keeps flowing throughout and the link stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz017_a_flood_of_2000_commands_is_answered_or_rate_limited_and_telemetry_keeps_flowing() {
    let broker = Mosquitto::start(true);
    let dir = TempDir::new("flood");
    let tower = remote_tower(&dir, &broker).await;
    let root = format!("endotower/v1/{}", tower.config().tower.id);
    let stats = tower.telemetry().unwrap().stats.clone();
    let a = broker.access();
    let sub =
        block_in_place(|| Sub::start(&a, Some("hmi"), &[format!("{root}/resp/hmi"), format!("{root}/telemetry"), format!("{root}/death")]));
    let births = stats.births.load(Ordering::Relaxed);
    let flood: Vec<String> = (0..2000).map(|i| format!(r#"{{"id":"f{i}","command":"set_pressure","mmhg":{}}}"#, 90 + i % 7)).collect();
    let t0 = Instant::now();
    let (ok, err) = block_in_place(|| publish_lines(&a, Some("hmi"), &format!("{root}/cmd/hmi"), &flood));
    let sent_in = t0.elapsed();
    assert!(ok, "mosquitto_pub: {err}");
    // Every command reaches the tower and is accounted for.
    assert!(
        wait_for(Duration::from_secs(30), || stats.commands.load(Ordering::Relaxed) >= 2000).await,
        "{} of 2000 commands reached the tower",
        stats.commands.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let msgs = sub.drain();
    let (mut rejected, mut limited_notices, mut batches) = (0u64, 0u64, Vec::new());
    for m in &msgs {
        if m.topic.ends_with("/resp/hmi") {
            match m.body["status"].as_str() {
                Some("rejected") => {
                    assert!(m.body["reason"].as_str().unwrap_or("").contains("outside"), "{}", m.body);
                    rejected += 1
                }
                Some("rate_limited") => limited_notices += 1,
                other => panic!("unexpected answer {other:?}: {}", m.body),
            }
        } else if m.topic.ends_with("/telemetry") {
            batches.push(m.body.clone());
        } else {
            panic!("a death during the flood: {}", m.body);
        }
    }
    let limited = stats.commands_rate_limited.load(Ordering::Relaxed);
    assert_eq!(rejected + limited, 2000, "answered {rejected} + rate-limited {limited} (sent in {sent_in:?})");
    assert!(limited_notices >= 1, "a rate-limited client is told so");
    assert_eq!(stats.responses_dropped.load(Ordering::Relaxed), 0);
    // Telemetry reports the count, and its batches kept coming: no gap in
    // the tower's own sample times over 1.5 s (batches every 250 ms).
    let last = batches.last().expect("telemetry during the flood");
    assert_eq!(last["health"]["commands_rate_limited"].as_u64(), Some(limited), "{}", last["health"]);
    let times: Vec<u64> =
        batches.iter().flat_map(|b| b["samples"].as_array().unwrap().iter().map(|s| s["at_ms"].as_u64().unwrap())).collect();
    let gap = times.windows(2).map(|w| w[1].saturating_sub(w[0])).max().unwrap_or(u64::MAX);
    assert!(gap < 1500, "telemetry gap of {gap} ms during the flood");
    assert_eq!(stats.births.load(Ordering::Relaxed), births, "the link dropped during the flood");
    assert!(tower.root_running());
    assert_eq!(tower.setpoints().pressure_mmhg(), 12.0);
    tower.shutdown().await;
}

/// HZ-017. A 1.5 MiB command is refused with an answer naming the cap, the
/// journal keeps its digest (never the payload), and the link stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz017_an_oversized_command_is_refused_with_an_answer_and_the_link_stays_up() {
    let broker = Mosquitto::start(true);
    let dir = TempDir::new("big");
    let tower = remote_tower(&dir, &broker).await;
    let root = format!("endotower/v1/{}", tower.config().tower.id);
    let stats = tower.telemetry().unwrap().stats.clone();
    let a = broker.access();
    let sub = block_in_place(|| Sub::start(&a, Some("hmi"), &[format!("{root}/resp/hmi"), format!("{root}/commands")]));
    let births = stats.births.load(Ordering::Relaxed);
    let big = dir.join("big.json");
    let filler = "x".repeat(3 << 19);
    std::fs::write(&big, format!(r#"{{"id":"big","command":"exam_info","number":"{filler}","sex":"F","age":30}}"#)).unwrap();
    let (ok, err) = block_in_place(|| publish_file(&a, Some("hmi"), &format!("{root}/cmd/hmi"), &big));
    assert!(ok, "mosquitto_pub: {err}");
    let r =
        block_in_place(|| sub.next(Duration::from_secs(10), |m| m.topic.ends_with("/resp/hmi"))).expect("no answer to a 1.5 MiB command");
    assert_eq!(r.body["status"], "rejected", "{}", r.body);
    assert!(r.body["reason"].as_str().unwrap().contains("at most 4096 bytes"), "{}", r.body);
    let rec = block_in_place(|| sub.next(Duration::from_secs(10), |m| m.topic.ends_with("/commands"))).expect("the refusal is journaled");
    assert_eq!(rec.body["command"]["bytes"].as_u64(), Some(std::fs::metadata(&big).unwrap().len()), "{}", rec.body["command"]);
    assert!(rec.body["command"]["sha256"].as_str().is_some_and(|h| h.len() == 64));
    // The journal holds the digest, never the payload.
    let jdir = dir.join("journal").join(&tower.config().tower.id);
    let journaled: u64 = std::fs::read_dir(&jdir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(journaled < 256 << 10, "{journaled} bytes journaled for a 1.5 MiB command");
    // Same session, and the next command is served.
    let (ok, _) = block_in_place(|| {
        publish_lines(&a, Some("hmi"), &format!("{root}/cmd/hmi"), &[r#"{"id":"after","command":"set_flow","lpm":-1}"#.into()])
    });
    assert!(ok);
    let r = block_in_place(|| sub.next(Duration::from_secs(10), |m| m.topic.ends_with("/resp/hmi"))).expect("no answer after the big one");
    assert_eq!(r.body["request_id"], "after");
    assert_eq!(stats.births.load(Ordering::Relaxed), births, "the link dropped");
    tower.shutdown().await;
}

/// The embedded broker heals by itself: clients that vanish before their
/// ConnAck and come back with the same id (what poisoned the old broker),
/// then a wedged process (SIGSTOP): new clients are served again within
/// 10 s each time, the tower never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hz019_the_embedded_broker_serves_new_clients_again_after_it_was_poisoned_or_wedged() {
    let dir = TempDir::new("heal");
    let mut cfg = test_config();
    cfg.video.enabled = false;
    cfg.telemetry.enabled = true;
    cfg.telemetry.journal.dir = dir.join("journal");
    cfg.telemetry.broker = BrokerConfig { probe_interval_s: 1, ..BrokerConfig::embedded("127.0.0.1:0") };
    let root = root(&cfg);
    let tower = Tower::start(cfg).await.unwrap();
    let t = tower.telemetry().unwrap();
    let stats = t.stats.clone();
    assert!(wait_for(Duration::from_secs(20), || stats.births.load(Ordering::Relaxed) > 0).await);
    let (broker, _) = t.embedded.clone().unwrap();
    let a = Access { addr: broker.addr, ca: None };
    // 1. Half-open connects: a CONNECT with a fixed client id, the socket
    //    closed before the ConnAck, twenty times, then the same id properly.
    let connect = mqtt_connect_packet("victim");
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(broker.addr).unwrap();
        s.write_all(&connect[..connect.len() / 2]).unwrap();
        drop(s);
        let mut s = std::net::TcpStream::connect(broker.addr).unwrap();
        s.write_all(&connect).unwrap();
        drop(s);
    }
    let served = block_in_place(|| served_within(&a, &root, Duration::from_secs(10)));
    assert!(served, "new clients not served after half-open connects");
    // 2. A wedged broker: the process stops answering.
    let pid = broker.pid().unwrap();
    let starts = broker.starts();
    // SAFETY: kill(2) on the tower's broker child.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let t0 = Instant::now();
    assert!(wait_for(Duration::from_secs(20), || broker.starts() > starts).await, "the wedged broker was never restarted");
    let served = block_in_place(|| served_within(&a, &root, Duration::from_secs(10)));
    assert!(served, "new clients not served {:?} after the wedge", t0.elapsed());
    assert!(wait_for(Duration::from_secs(10), || !tower.events().is_active("telemetry", "EMBEDDED_BROKER_DOWN")).await);
    assert!(tower.root_running());
    tower.shutdown().await;
}

/// An MQTT 3.1.1 CONNECT for `id`, clean session, keep-alive 5 s.
fn mqtt_connect_packet(id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 5];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

/// A fresh subscriber gets the retained birth within `limit`.
fn served_within(a: &Access, root: &str, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &a.addr.port().to_string(), "-t", &format!("{root}/birth"), "-C", "1", "-W", "2"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The environment variable that turns this test binary into a tower process
/// raising alarm bursts (for the SIGKILL test); its value is the config file.
const CRASH_CHILD: &str = "ENDOTOWER_CRASH_CHILD";

/// Not a test by itself: the crash test runs this binary again with
/// [`CRASH_CHILD`] set, as the tower it kills.
#[test]
#[ignore = "the tower process of the SIGKILL test; does nothing on its own"]
fn crash_child() {
    let Ok(file) = std::env::var(CRASH_CHILD) else { return };
    let cfg = TowerConfig::from_toml(&std::fs::read_to_string(file).unwrap()).unwrap();
    let run: u32 = std::env::var("ENDOTOWER_CRASH_RUN").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let tower = Tower::start(cfg).await.unwrap();
        let journal = tower.telemetry().unwrap().journal.clone();
        let mut out = std::io::stdout().lock();
        if run == u32::MAX {
            // The last start: everything replayed and acknowledged.
            assert!(wait_for(Duration::from_secs(60), || journal.stats().unacked == 0).await, "replay never finished");
            writeln!(out, "DRAINED").unwrap();
            out.flush().unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
            return;
        }
        writeln!(out, "STARTED").unwrap();
        out.flush().unwrap();
        let mut i = 0u32;
        loop {
            // A burst of 1..=25 alarms, back to back, then a pause.
            for _ in 0..(1 + i % 25) {
                let code = format!("CRASH-{run:03}-{i:05}");
                tower.events().raise("crash", &code, Severity::Low, "raised before a SIGKILL");
                // Raised: printed only after raise() returned.
                writeln!(out, "RAISED {code}").unwrap();
                out.flush().unwrap();
                i += 1;
            }
            tokio::time::sleep(Duration::from_millis(u64::from(i % 7) * 3)).await;
        }
    });
}

/// HZ-016. The tower is killed (SIGKILL) at 100 random points during bursts
/// of alarms: after the restarts every alarm raised before a kill arrives,
/// with its original id, and no alarm comes under two ids.
#[test]
fn hz016_alarms_raised_before_a_sigkill_all_arrive_with_their_original_ids() {
    let broker = Mosquitto::start(false);
    let dir = TempDir::new("crash");
    let cfg = telemetry_config(broker.port, &dir.join("journal"));
    let root = root(&cfg);
    let file = dir.join("tower.toml");
    std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
    let sub = Sub::start(&broker.access(), None, &[format!("{root}/events")]);
    let child = |run: u32| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads", "1"])
            .env(CRASH_CHILD, &file)
            .env("ENDOTOWER_CRASH_RUN", run.to_string())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut raised = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for run in 0..100u32 {
        let mut tower = child(run);
        let lines = BufReader::new(tower.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for l in lines.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        // (libtest prints its own lines first.)
        // (libtest prints its own words first, on the same line.)
        let end = Instant::now() + Duration::from_secs(60);
        let started =
            std::iter::from_fn(|| rx.recv_timeout(end.saturating_duration_since(Instant::now())).ok()).any(|l| l.ends_with("STARTED"));
        if !started {
            let _ = tower.kill();
            panic!("run {run}: the tower did not start");
        }
        // A random point 0..400 ms into the bursts.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 400));
        tower.kill().unwrap();
        tower.wait().unwrap();
        reader.join().unwrap();
        raised.extend(rx.try_iter().filter_map(|l| l.strip_prefix("RAISED ").map(str::to_string)));
    }
    // One more start that is left to replay everything.
    let mut last = child(u32::MAX);
    let drained = BufReader::new(last.stdout.take().unwrap()).lines().map_while(Result::ok).any(|l| l.ends_with("DRAINED"));
    let _ = last.kill();
    let _ = last.wait();
    assert!(drained, "the last start never replayed everything");
    std::thread::sleep(Duration::from_secs(1));
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut codes_by_id: BTreeMap<String, String> = BTreeMap::new();
    let mut copies = 0usize;
    for m in sub.drain() {
        let Some(code) = m.body["code"].as_str().filter(|c| c.starts_with("CRASH-")) else { continue };
        let id = m.body["id"].as_str().unwrap().to_string();
        copies += 1;
        if let Some(prev) = ids.insert(code.to_string(), id.clone()) {
            assert_eq!(prev, id, "{code} arrived under two ids");
        }
        codes_by_id.insert(id, code.to_string());
    }
    let missing: Vec<&String> = raised.iter().filter(|c| !ids.contains_key(*c)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} alarms raised before a kill never arrived, e.g. {:?}",
        missing.len(),
        raised.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(codes_by_id.len(), ids.len());
    eprintln!(
        "{} alarms raised over 100 kills; {} copies received ({} duplicates of a known id)",
        raised.len(),
        copies,
        copies - ids.len()
    );
}
