//! Remote telemetry and control over MQTT, end to end: the tower (in-process
//! on its simulators, or as a separate `endotower run` process) against a
//! real broker on a free loopback port. Every test runs twice, against
//! mosquitto (Debian's, with a generated config file) and against the
//! embedded broker (mosquitto as the tower runs it, as `endotower broker`),
//! so each broker can be stopped and restarted. Remote control runs behind
//! authenticating brokers only (mosquitto with TLS, a password file and an
//! ACL; the tower's embedded broker with a password file), driven by
//! mosquitto_pub and mosquitto_sub.

mod common;

use common::mqtt::{free_port, publish_lines, root, Access, Mosquitto, Sub, TempDir};
use common::{test_config, wait_for};
use endotower::tower::Tower;
use endotower::tower_config::TowerConfig;
use endotower_actors::events::Severity;
use endotower_actors::telemetry::config::BrokerConfig;
use endotower_actors::telemetry::link::MqttLinkState;
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::block_in_place;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Mosquitto,
    Embedded,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("endotower-mqtt-{}-{}-{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A broker process on a free loopback port; killed on drop.
struct Broker {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn start(kind: Kind) -> Broker {
        let mut b = Broker { kind, port: free_port(), dir: temp_dir("broker"), child: None };
        b.restart();
        b
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// (Re)start on the same port.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = match self.kind {
            Kind::Mosquitto => {
                let conf = self.dir.join("mosquitto.conf");
                let text = format!(
                    "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nmax_queued_messages 100000\n",
                    self.port
                );
                std::fs::write(&conf, text).unwrap();
                Command::new("/usr/sbin/mosquitto").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
            }
            Kind::Embedded => Command::new(env!("CARGO_BIN_EXE_endotower"))
                .args(["broker", "--bind", &format!("127.0.0.1:{}", self.port)])
                .current_dir(&self.dir)
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn(),
        };
        self.child = Some(child.unwrap_or_else(|e| panic!("cannot start the {:?} broker: {e}", self.kind)));
        common::mqtt::wait_listening(self.addr());
    }

    fn stop(&mut self) {
        let addr = self.addr();
        common::mqtt::kill_and_wait_closed(&mut self.child, addr);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One received message.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    retain: bool,
    body: Value,
}

/// A test client: subscribes to `filters` on every ConnAck, reconnects
/// every 50 ms while the broker is away, and can publish.
struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    subacks: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(addr: SocketAddr, id: &str, filters: &[String]) -> Client {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(o, 256);
        let (tx, rx) = mpsc::unbounded_channel();
        let subacks = Arc::new(AtomicU64::new(0));
        let filters_count = filters.len() as u64;
        let (c, filters, acks) = (client.clone(), filters.to_vec(), subacks.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            let _ = c.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                        let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let _ = tx.send(Msg { topic: p.topic.clone(), retain: p.retain, body });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let n = filters_count;
        let c = Client { client, rx, subacks, task };
        assert!(wait_for(Duration::from_secs(10), || c.subacks.load(Ordering::SeqCst) >= n).await, "client {id} never subscribed");
        c
    }

    /// The next message matching `f`, within `limit`.
    async fn next(&mut self, limit: Duration, mut f: impl FnMut(&Msg) -> bool) -> Option<Msg> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(end, self.rx.recv()).await {
                Ok(Some(m)) if f(&m) => return Some(m),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    async fn publish(&self, topic: String, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.into()).await.unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The test config with telemetry on, against `broker`.
fn telemetry_config(broker: &Broker, journal: &std::path::Path) -> TowerConfig {
    common::mqtt::telemetry_config(broker.port, journal)
}

async fn started(cfg: TowerConfig) -> Tower {
    let tower = Tower::start(cfg).await.unwrap();
    let stats = tower.telemetry().expect("telemetry running").stats.clone();
    assert!(wait_for(Duration::from_secs(20), || stats.births.load(Ordering::Relaxed) > 0).await, "the tower never connected");
    tower
}

// ---------------------------------------------------------------------------
// The scenarios, each run against both brokers (see `suite!` below).
// ---------------------------------------------------------------------------

async fn birth_and_retained_state(kind: Kind) {
    let broker = Broker::start(kind);
    let journal = temp_dir("journal");
    let cfg = telemetry_config(&broker, &journal);
    let root = root(&cfg);
    let tower = started(cfg).await;
    let sim = tower.sim().unwrap();
    assert!(wait_for(Duration::from_secs(10), || tower.channels().insufflator.borrow().polls > 5).await);
    let _ = sim;
    // A subscriber that comes later still gets the birth and every device's
    // state: they are retained.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The retained birth and device states, by narrow filters.
    let filters = [format!("{root}/birth"), format!("{root}/state/+")];
    let mut late = Client::connect(broker.addr(), &format!("late-{}", std::process::id()), &filters).await;
    let birth = late.next(Duration::from_secs(10), |m| m.topic.ends_with("/birth")).await.expect("no retained birth");
    assert!(birth.retain);
    assert_eq!(birth.body["v"], 1);
    assert!(birth.body["bd_seq"].as_u64().unwrap() >= 1);
    let metrics: Vec<&str> = birth.body["metrics"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for m in ["pressure_mmhg", "flow_lpm", "supply_bar", "light_output_pct", "led_temp_c", "health.restarts"] {
        assert!(metrics.contains(&m), "birth lacks metric {m}: {metrics:?}");
    }
    // Live updates may interleave; every device must come with a retained copy.
    let mut devices = HashSet::new();
    while devices.len() < 5 {
        let s = late
            .next(Duration::from_secs(10), |m| m.topic.contains("/state/") && m.retain)
            .await
            .unwrap_or_else(|| panic!("retained states seen: {devices:?}"));
        if s.body["device"] == "insufflator" {
            assert_eq!(s.body["state"]["link"], "connected", "{}", s.body);
        }
        devices.insert(s.body["device"].as_str().unwrap().to_string());
    }
    for d in ["insufflator", "light", "camera", "pedal", "tower"] {
        assert!(devices.contains(d), "{devices:?}");
    }
    tower.shutdown().await;
    let _ = std::fs::remove_dir_all(&journal);
}

async fn death_when_the_tower_process_is_killed(kind: Kind) {
    let broker = Broker::start(kind);
    let dir = temp_dir("process");
    let mut cfg = telemetry_config(&broker, &dir.join("journal"));
    cfg.video.enabled = false;
    let root = root(&cfg);
    let file = dir.join("tower.toml");
    std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
    let mut sub = Client::connect(broker.addr(), &format!("watch-{}", std::process::id()), &[format!("{root}/#")]).await;
    let mut tower = Command::new(env!("CARGO_BIN_EXE_endotower"))
        .arg("run")
        .arg("--config")
        .arg(&file)
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let birth = sub.next(Duration::from_secs(30), |m| m.topic.ends_with("/birth")).await;
    let Some(birth) = birth else {
        let _ = tower.kill();
        panic!("the tower process never published its birth");
    };
    tower.kill().unwrap(); // SIGKILL: no chance to say goodbye
    tower.wait().unwrap();
    let death = sub.next(Duration::from_secs(30), |m| m.topic.ends_with("/death")).await.expect("no death message after kill -9");
    assert_eq!(death.body["reason"], "connection_lost");
    assert_eq!(death.body["bd_seq"], birth.body["bd_seq"], "the death ends the birth it belongs to");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn telemetry_at_the_configured_rate(kind: Kind) {
    let broker = Broker::start(kind);
    let journal = temp_dir("journal");
    let cfg = telemetry_config(&broker, &journal); // 20 Hz samples, a batch every 250 ms
    let root = root(&cfg);
    let mut sub = Client::connect(broker.addr(), &format!("tm-{}", std::process::id()), &[format!("{root}/telemetry")]).await;
    let tower = started(cfg).await;
    // Skip the first batches (start-up), then count over 4 s of batches.
    let first = sub.next(Duration::from_secs(10), |_| true).await.expect("no telemetry");
    let t0 = first.body["at_ms"].as_u64().unwrap();
    let (mut batches, mut samples) = (0u64, 0u64);
    let mut last = first.body.clone();
    while let Some(m) = sub.next(Duration::from_secs(5), |_| true).await {
        if m.body["at_ms"].as_u64().unwrap() > t0 + 4000 {
            break;
        }
        batches += 1;
        samples += m.body["samples"].as_array().unwrap().len() as u64;
        last = m.body;
    }
    // 4 s at 4 batches/s and 20 samples/s: 16 and 80, with a wide margin.
    assert!((8..=24).contains(&batches), "{batches} batches in 4 s at 4/s");
    assert!((40..=120).contains(&samples), "{samples} samples in 4 s at 20/s");
    let s = &last["samples"][0];
    assert!(s["pressure_mmhg"].is_number() && s["led_temp_c"].is_number(), "{s}");
    assert_eq!(last["health"]["links"]["insufflator"], "connected");
    // The enhancement stage reports its state ("disabled": no video in this config).
    assert_eq!(last["health"]["enhancement"], "disabled", "{}", last["health"]);
    assert!(last["health"]["enhanced_fraction"].is_number());
    assert_eq!(last["dropped_batches"], 0);
    tower.shutdown().await;
    let _ = std::fs::remove_dir_all(&journal);
}

async fn alarms_during_a_broker_outage_all_arrive_once_in_order(kind: Kind) {
    let mut broker = Broker::start(kind);
    let journal = temp_dir("journal");
    let mut cfg = telemetry_config(&broker, &journal);
    // A steady reconnect pace, so the test's subscriber (retrying every
    // 50 ms) is back before the tower replays.
    cfg.telemetry.backoff_initial_ms = 1500;
    cfg.telemetry.backoff_max_ms = 1500;
    let root = root(&cfg);
    let mut sub = Client::connect(broker.addr(), &format!("ev-{}", std::process::id()), &[format!("{root}/events")]).await;
    let tower = started(cfg).await;
    let stats = tower.telemetry().unwrap().stats.clone();
    broker.stop();
    assert!(wait_for(Duration::from_secs(20), || stats.link_state() == Some(MqttLinkState::Lost)).await, "link never lost");
    for i in 0..100 {
        tower.events().raise("test", &format!("OUTAGE-{i:03}"), Severity::Low, format!("raised during the outage ({i})"));
    }
    // The tower goes on working meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tower.root_running());
    assert!(tower.channels().insufflator.borrow().polls > 0);
    let acks = sub.subacks.load(Ordering::SeqCst);
    broker.restart();
    assert!(wait_for(Duration::from_secs(10), || sub.subacks.load(Ordering::SeqCst) > acks).await, "subscriber not back");
    let (mut ids, mut codes, mut raw) = (HashSet::new(), Vec::new(), 0);
    let mut last_n = 0;
    while codes.len() < 100 {
        let Some(m) = sub.next(Duration::from_secs(30), |m| m.body["code"].as_str().is_some_and(|c| c.starts_with("OUTAGE-"))).await else {
            panic!("only {} of 100 alarms arrived: {codes:?}", codes.len());
        };
        raw += 1;
        if ids.insert(m.body["id"].as_str().unwrap().to_string()) {
            let n = m.body["n"].as_u64().unwrap();
            assert!(n > last_n, "out of order: n {n} after {last_n}");
            last_n = n;
            codes.push(m.body["code"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(codes, (0..100).map(|i| format!("OUTAGE-{i:03}")).collect::<Vec<_>>());
    assert!(raw >= 100);
    // Nothing more arrives for them, beyond duplicates of ids already seen.
    while let Some(m) = sub.next(Duration::from_secs(1), |m| m.body["code"].as_str().is_some_and(|c| c.starts_with("OUTAGE-"))).await {
        assert!(ids.contains(m.body["id"].as_str().unwrap()), "a new id after all 100: {}", m.body);
    }
    assert!(wait_for(Duration::from_secs(10), || tower.telemetry().unwrap().journal.stats().unacked == 0).await, "journal not acked");
    tower.shutdown().await;
    let _ = std::fs::remove_dir_all(&journal);
}

/// A tower with remote control on, behind an authenticating broker of
/// `kind`: mosquitto with TLS (test CA), the password file and the ACL; or
/// the tower's embedded broker with the same password file.
struct RemoteRig {
    tower: Tower,
    access: Access,
    root: String,
    _broker: Option<Mosquitto>,
    _dir: TempDir,
}

async fn remote_rig(kind: Kind, tweak: impl FnOnce(&mut TowerConfig)) -> RemoteRig {
    let dir = TempDir::new("remote");
    let mut cfg = test_config();
    cfg.video.enabled = false;
    let t = &mut cfg.telemetry;
    t.enabled = true;
    t.client_id = format!("tower-{}", cfg.tower.id);
    t.journal.dir = dir.join("journal");
    t.sample_hz = 20.0;
    t.batch_ms = 250;
    t.remote.enabled = true;
    t.remote.allowed_clients = vec!["hmi".into(), "ris".into()];
    let broker = match kind {
        Kind::Mosquitto => {
            let m = Mosquitto::start(true);
            t.broker = BrokerConfig {
                username: Some("tower".into()),
                password: Some(common::mqtt::password("tower")),
                ca_file: m.ca.as_ref().map(|c| c.ca.clone()),
                ..BrokerConfig::external("127.0.0.1", m.port)
            };
            Some(m)
        }
        Kind::Embedded => {
            t.broker = BrokerConfig { password_file: Some(common::mqtt::password_file(&dir.0)), ..BrokerConfig::embedded("127.0.0.1:0") };
            None
        }
    };
    tweak(&mut cfg);
    let root = root(&cfg);
    let tower = started(cfg).await;
    let access = match &broker {
        Some(m) => m.access(),
        None => {
            let ep = tower.telemetry().unwrap().endpoint.clone();
            Access { addr: format!("{}:{}", ep.host, ep.port).parse().unwrap(), ca: None }
        }
    };
    RemoteRig { tower, access, root, _broker: broker, _dir: dir }
}

impl RemoteRig {
    /// A subscriber (as `user`) on every answer topic.
    fn answers(&self, user: &str) -> Sub {
        block_in_place(|| Sub::start(&self.access, Some(user), &[format!("{}/resp/+", self.root), format!("{}/commands", self.root)]))
    }

    /// Publish `payload` as `user` on `cmd/<topic_client>`.
    fn send(&self, user: &str, topic_client: &str, payload: &str) {
        let (ok, err) =
            block_in_place(|| publish_lines(&self.access, Some(user), &format!("{}/cmd/{topic_client}", self.root), &[payload.into()]));
        assert!(ok, "mosquitto_pub as {user}: {err}");
    }

    /// Send as `user` on its own command topic and wait for the answer.
    fn request(&self, sub: &Sub, user: &str, payload: &str) -> Value {
        self.send(user, user, payload);
        let topic = format!("{}/resp/{user}", self.root);
        block_in_place(|| sub.next(Duration::from_secs(10), |m| m.topic == topic)).unwrap_or_else(|| panic!("no reply to {payload}")).body
    }
}

async fn two_step_setpoint_change(kind: Kind) {
    let rig = remote_rig(kind, |_| {}).await;
    let sub = rig.answers("hmi");
    let r = rig.request(&sub, "hmi", r#"{"id":"r1","command":"set_pressure","mmhg":15}"#);
    assert_eq!(r["status"], "confirm_required", "{r}");
    assert_eq!(r["request_id"], "r1");
    assert_eq!(r["apply"], serde_json::json!({"command": "set_pressure", "mmhg": 15.0}));
    assert_eq!(rig.tower.setpoints().pressure_mmhg(), 12.0, "nothing applied before the confirm");
    let token = r["token"].as_str().unwrap();
    let r = rig.request(&sub, "hmi", &format!(r#"{{"id":"r2","command":"confirm","token":"{token}"}}"#));
    assert_eq!(r["status"], "accepted", "{r}");
    assert_eq!(rig.tower.setpoints().pressure_mmhg(), 15.0);
    // Both commands are journaled and published on `commands`.
    let rec = block_in_place(|| sub.next(Duration::from_secs(10), |m| m.topic.ends_with("/commands") && m.body["command"]["id"] == "r2"));
    assert!(rec.is_some_and(|m| m.body["response"]["status"] == "accepted" && m.body["client"] == "hmi"));
    rig.tower.shutdown().await;
}

async fn bad_commands_are_rejected_and_the_tower_carries_on(kind: Kind) {
    let rig = remote_rig(kind, |c| c.telemetry.remote.confirm_timeout_ms = 300).await;
    let tower = &rig.tower;
    let sub = rig.answers("hmi");
    let cases: &[(&str, &str, &str)] = &[
        ("hmi", "{\"command\": \"set_pressure\", \"mmhg\": ", "malformed JSON"),
        ("hmi", r#"{"command":"set_pressure","mmhg":14,"override":true}"#, "unknown field `override`"),
        ("hmi", r#"{"command":"set_pressure","mmhg":40}"#, "set_pressure = 40 is outside 3 ..= 25 mmHg"),
        ("hmi", r#"{"command":"set_flow","lpm":-1}"#, "set_flow = -1 is outside"),
        ("hmi", r#"{"command":"confirm","token":"00000000deadbeef"}"#, "unknown or expired confirmation token"),
        ("hmi", r#"{"command":"exam_info","number":"E-1","sex":"Q","age":40}"#, "exam sex"),
        // An authenticated client on its own topic, but not one allowed to command.
        ("mallory", r#"{"command":"ack_alarm","key":"safety/HZ-001"}"#, "client `mallory` is not allowed"),
        ("hmi", r#"{"command":"ack_alarm","key":"nobody/NOTHING"}"#, "no active alarm nobody/NOTHING"),
    ];
    for (client, payload, reason) in cases {
        let r = rig.request(&sub, client, payload);
        assert_eq!(r["status"], "rejected", "{payload}: {r}");
        let got = r["reason"].as_str().unwrap_or_default();
        assert!(got.contains(reason), "{payload}: reason {got:?} lacks {reason:?}");
    }
    // A stale token: issued, then confirmed after its window.
    let r = rig.request(&sub, "hmi", r#"{"command":"set_intensity","pct":50}"#);
    let token = r["token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = rig.request(&sub, "hmi", &format!(r#"{{"command":"confirm","token":"{token}"}}"#));
    assert_eq!(r["status"], "rejected");
    assert!(r["reason"].as_str().unwrap().contains("expired"), "{r}");
    // Nothing changed, nothing crashed, and good commands still work.
    assert_eq!((tower.setpoints().pressure_mmhg(), tower.setpoints().intensity_pct()), (12.0, 80.0));
    assert!(tower.root_running());
    let status = tower.supervisor_status("root").await.unwrap();
    assert!(status.iter().all(|c| c.running && c.restarts == 0), "{status:?}");
    let ris = rig.answers("ris");
    let r = rig.request(&ris, "ris", r#"{"command":"exam_info","number":"E-2026-0042","sex":"M","age":47}"#);
    assert_eq!(r["status"], "accepted", "{r}");
    assert_eq!(tower.video().exam.borrow().number, "E-2026-0042");
    rig.tower.shutdown().await;
}

/// HZ-017: a client cannot command under another client's name, and a
/// client without valid credentials cannot connect at all.
async fn spoofed_and_unauthenticated_clients_are_refused(kind: Kind) {
    let rig = remote_rig(kind, |_| {}).await;
    let stats = rig.tower.telemetry().unwrap().stats.clone();
    let sub = rig.answers("hmi");
    // `ris` publishes on hmi's command topic: the broker drops it (ACL), so
    // the tower never sees it and nothing is applied or answered.
    let before = stats.commands.load(Ordering::Relaxed);
    let flow = rig.tower.setpoints().flow_lpm();
    rig.send("ris", "hmi", r#"{"id":"spoof","command":"set_flow","lpm":5}"#);
    let reply = block_in_place(|| sub.next(Duration::from_secs(3), |m| m.topic.ends_with("/resp/hmi")));
    assert!(reply.is_none(), "a spoofed command was answered: {reply:?}");
    assert_eq!(stats.commands.load(Ordering::Relaxed), before, "the tower received a spoofed command");
    // The same command from hmi itself is received and answered.
    let r = rig.request(&sub, "hmi", r#"{"id":"own","command":"set_flow","lpm":5}"#);
    assert_eq!(r["request_id"], "own", "{r}");
    assert_eq!(stats.commands.load(Ordering::Relaxed), before + 1);
    // No credentials, or a wrong password: the broker refuses the connection.
    let root = rig.root.clone();
    let topic = format!("{root}/cmd/hmi");
    let (ok, err) = block_in_place(|| publish_lines(&rig.access, None, &topic, &[r#"{"command":"set_flow","lpm":6}"#.into()]));
    assert!(!ok && err.to_lowercase().contains("not authori"), "an anonymous client was let in: {err}");
    let out = block_in_place(|| {
        std::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &rig.access.addr.port().to_string(),
                "-u",
                "hmi",
                "-P",
                "guess",
                "-q",
                "1",
                "-t",
                &topic,
                "-m",
                "{}",
            ])
            .args(rig.access.ca.iter().flat_map(|c| ["--cafile".to_string(), c.display().to_string()]))
            .output()
            .unwrap()
    });
    assert!(!out.status.success(), "a wrong password was accepted");
    assert_eq!(stats.commands.load(Ordering::Relaxed), before + 1, "a refused client's command reached the tower");
    // set_flow needs a confirm: nothing at all was applied.
    assert_eq!(rig.tower.setpoints().flow_lpm(), flow);
    rig.tower.shutdown().await;
}

async fn request(c: &mut Client, root: &str, client: &str, payload: &str) -> Value {
    c.publish(format!("{root}/cmd/{client}"), payload.to_string()).await;
    c.next(Duration::from_secs(10), |m| m.topic == format!("{root}/resp/{client}"))
        .await
        .unwrap_or_else(|| panic!("no reply to {payload}"))
        .body
}

async fn remote_control_disabled_by_default(kind: Kind) {
    let broker = Broker::start(kind);
    let journal = temp_dir("journal");
    let shipped =
        TowerConfig::from_toml(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tower.toml")).unwrap()).unwrap();
    assert!(!shipped.telemetry.remote.enabled);
    let mut cfg = telemetry_config(&broker, &journal);
    cfg.telemetry.remote = shipped.telemetry.remote;
    let root = root(&cfg);
    let tower = started(cfg).await;
    let mut c = Client::connect(broker.addr(), &format!("off-{}", std::process::id()), &[format!("{root}/resp/+")]).await;
    for payload in [r#"{"command":"set_pressure","mmhg":14}"#, r#"{"command":"exam_info","number":"E-9","sex":"F","age":30}"#] {
        let r = request(&mut c, &root, "hmi", payload).await;
        assert_eq!(r["status"], "rejected", "{r}");
        assert!(r["reason"].as_str().unwrap().contains("remote control is disabled"), "{r}");
    }
    assert_eq!(tower.setpoints().pressure_mmhg(), 12.0);
    tower.shutdown().await;
    let _ = std::fs::remove_dir_all(&journal);
}

macro_rules! suite {
    ($name:ident, $kind:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn birth_and_retained_state_on_connect() {
                common::init_logs();
                birth_and_retained_state($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn death_message_when_the_tower_process_is_killed() {
                death_when_the_tower_process_is_killed($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn telemetry_batches_at_the_configured_rate() {
                telemetry_at_the_configured_rate($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hz016_100_alarms_during_a_broker_outage_arrive_all_once_in_order() {
                alarms_during_a_broker_outage_all_arrive_once_in_order($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hz017_two_step_setpoint_change_is_applied_after_the_confirm() {
                two_step_setpoint_change($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hz017_bad_commands_are_rejected_with_a_reason_and_the_tower_is_unaffected() {
                bad_commands_are_rejected_and_the_tower_carries_on($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hz017_spoofed_and_unauthenticated_clients_are_refused() {
                spoofed_and_unauthenticated_clients_are_refused($kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hz017_remote_control_is_disabled_by_default() {
                remote_control_disabled_by_default($kind).await;
            }
        }
    };
}

suite!(mosquitto, Kind::Mosquitto);
suite!(embedded, Kind::Embedded);

/// `endotower run`'s default: the tower starts its own broker (a child process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_starts_its_embedded_broker_and_publishes_to_it() {
    let journal = temp_dir("journal");
    let mut cfg = test_config();
    cfg.video.enabled = false;
    cfg.telemetry.enabled = true;
    cfg.telemetry.journal.dir = journal.clone();
    cfg.telemetry.broker = BrokerConfig { probe_interval_s: 1, ..BrokerConfig::embedded("127.0.0.1:0") };
    let root = root(&cfg);
    let tower = started(cfg).await;
    let ep = tower.telemetry().unwrap().endpoint.clone();
    let addr: SocketAddr = format!("{}:{}", ep.host, ep.port).parse().unwrap();
    let mut c = Client::connect(addr, &format!("emb-{}", std::process::id()), &[format!("{root}/#")]).await;
    assert!(c.next(Duration::from_secs(10), |m| m.topic.ends_with("/birth") && m.retain).await.is_some());
    // The health probe sees a working broker: no alarm after a few probes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!tower.events().is_active("telemetry", "EMBEDDED_BROKER_DOWN"));
    tower.shutdown().await;
    let _ = std::fs::remove_dir_all(&journal);
}

/// The committed schema files are what `endotower mqtt-schema` writes.
#[test]
fn committed_mqtt_schemas_match_the_payload_types() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema"));
    for (name, schema) in endotower_actors::telemetry::payloads::schemas() {
        let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let got = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(got == want, "docs/schema/{name} is stale: run `endotower mqtt-schema`");
    }
}
