//! MQTT test peers that share no code with the tower: Debian's mosquitto
//! (with a password file, an ACL and a TLS listener signed by a CA made here
//! with openssl), and mosquitto_sub / mosquitto_pub as the independent
//! client. Every server listens on 127.0.0.1 on a free port and is killed on
//! drop.

use endotower::tower_config::TowerConfig;
use endotower_actors::telemetry::config::BrokerConfig;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("endotower-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA and a server certificate for 127.0.0.1 (IP SAN), made with openssl.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn make(dir: &Path) -> TestCa {
        let p = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=endotower test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]);
        std::fs::write(p("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        // mosquitto started as root reads its files as the mosquitto user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        TestCa { ca: p("ca.pem"), cert: p("server.pem"), key: p("server.key") }
    }
}

/// The users of an authenticating broker: every one's password is `pw-<name>`.
pub const USERS: [&str; 4] = ["tower", "hmi", "ris", "mallory"];

pub fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// A mosquitto_passwd file with [`USERS`].
pub fn password_file(dir: &Path) -> PathBuf {
    let file = dir.join("passwd");
    std::fs::write(&file, "").unwrap();
    for u in USERS {
        run(Command::new("mosquitto_passwd").arg("-b").arg(&file).arg(u).arg(password(u)));
    }
    file
}

/// How a broker is reached: with TLS (the CA to verify it) and credentials, or neither.
#[derive(Clone)]
pub struct Access {
    pub addr: SocketAddr,
    pub ca: Option<PathBuf>,
}

/// Debian's mosquitto on a free loopback port. `secure`: TLS with the test
/// CA, the password file, and the ACL the embedded broker also applies (a
/// client publishes only on its own command topic).
pub struct Mosquitto {
    pub port: u16,
    pub dir: TempDir,
    pub ca: Option<TestCa>,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start(secure: bool) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let port = free_port();
        let mut text = format!("listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nmax_queued_messages 100000\n");
        let ca = secure.then(|| TestCa::make(&dir.0));
        match &ca {
            None => text.push_str("allow_anonymous true\n"),
            Some(ca) => {
                let acl = dir.join("acl");
                std::fs::write(
                    &acl,
                    "user tower\ntopic readwrite endotower/v1/#\n\npattern read endotower/v1/#\npattern write endotower/v1/+/cmd/%u\n",
                )
                .unwrap();
                text.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\nacl_file {}\ncafile {}\ncertfile {}\nkeyfile {}\n",
                    password_file(&dir.0).display(),
                    acl.display(),
                    ca.ca.display(),
                    ca.cert.display(),
                    ca.key.display()
                ));
            }
        }
        std::fs::write(dir.join("mosquitto.conf"), text).unwrap();
        let mut m = Mosquitto { port, dir, ca, child: None };
        m.restart();
        m
    }

    pub fn access(&self) -> Access {
        Access { addr: self.addr(), ca: self.ca.as_ref().map(|c| c.ca.clone()) }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("mosquitto running")
    }

    /// (Re)start on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto: {e}"));
        self.child = Some(child);
        wait_listening(self.addr());
    }

    pub fn stop(&mut self) {
        let addr = self.addr();
        kill_and_wait_closed(&mut self.child, addr);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kill a server (as a crash would) and wait until nothing listens on its port.
pub fn kill_and_wait_closed(child: &mut Option<Child>, addr: SocketAddr) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_listening(addr: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < end, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Who connects: a user of [`USERS`] (with its password), or anonymous.
fn client_args(a: &Access, user: Option<&str>) -> Vec<String> {
    let mut v = vec!["-h".into(), "127.0.0.1".into(), "-p".into(), a.addr.port().to_string()];
    if let Some(ca) = &a.ca {
        v.extend(["--cafile".into(), ca.display().to_string()]);
    }
    if let Some(u) = user {
        v.extend(["-u".into(), u.into(), "-P".into(), password(u)]);
    }
    v
}

/// One message as mosquitto_sub printed it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub retain: bool,
    pub body: Value,
    /// When the test received it.
    pub at: Instant,
}

/// mosquitto_sub on `filters` at QoS 1, printing every message; it
/// reconnects and subscribes again by itself after a broker outage.
pub struct Sub {
    child: Child,
    rx: mpsc::Receiver<Msg>,
    /// SubAcks seen (one per filter and connection).
    pub subacks: Arc<AtomicU64>,
}

impl Sub {
    pub fn start(a: &Access, user: Option<&str>, filters: &[String]) -> Sub {
        // Line-buffered: the debug lines (SUBACK) come as they happen.
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub"]).args(client_args(a, user)).args(["-q", "1", "-d", "-k", "5", "-F", "MSG\t%t\t%r\t%p"]);
        cmd.args(["-i", &format!("sub-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))]);
        for f in filters {
            cmd.args(["-t", f]);
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("mosquitto_sub (apt mosquitto-clients)");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let subacks = Arc::new(AtomicU64::new(0));
        let acks = subacks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("received SUBACK") {
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                let Some(rest) = line.strip_prefix("MSG\t") else { continue };
                let mut parts = rest.splitn(3, '\t');
                let (Some(topic), Some(retain), Some(payload)) = (parts.next(), parts.next(), parts.next()) else { continue };
                let body = serde_json::from_str(payload).unwrap_or(Value::Null);
                if tx.send(Msg { topic: topic.into(), retain: retain == "1", body, at: Instant::now() }).is_err() {
                    return;
                }
            }
        });
        let s = Sub { child, rx, subacks };
        let end = Instant::now() + Duration::from_secs(10);
        while s.subacks.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < end, "mosquitto_sub never subscribed to {filters:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    /// The next message matching `f`, within `limit`.
    pub fn next(&self, limit: Duration, mut f: impl FnMut(&Msg) -> bool) -> Option<Msg> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if f(&m) => return Some(m),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Every message received so far (without waiting).
    pub fn drain(&self) -> Vec<Msg> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto_pub: publish each of `payloads` (one line each) on `topic` at
/// QoS 1 over one connection; returns its exit status and stderr.
pub fn publish_lines(a: &Access, user: Option<&str>, topic: &str, payloads: &[String]) -> (bool, String) {
    let mut child = Command::new("mosquitto_pub")
        .args(client_args(a, user))
        .args(["-q", "1", "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (apt mosquitto-clients)");
    let mut input = child.stdin.take().unwrap();
    let mut text = String::new();
    for p in payloads {
        assert!(!p.contains('\n'));
        text.push_str(p);
        text.push('\n');
    }
    input.write_all(text.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// mosquitto_pub: one message with the contents of `file`.
pub fn publish_file(a: &Access, user: Option<&str>, topic: &str, file: &Path) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(client_args(a, user))
        .args(["-q", "1", "-t", topic, "-f"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_pub (apt mosquitto-clients)");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The test config with telemetry on (video off) against an anonymous
/// broker on `port`, fast batches and reconnects.
pub fn telemetry_config(port: u16, journal: &Path) -> TowerConfig {
    let mut cfg = super::test_config();
    cfg.video.enabled = false;
    let t = &mut cfg.telemetry;
    t.enabled = true;
    t.client_id = format!("tower-{}", cfg.tower.id);
    t.broker = BrokerConfig::external("127.0.0.1", port);
    t.journal.dir = journal.to_path_buf();
    t.sample_hz = 20.0;
    t.batch_ms = 250;
    t.backoff_initial_ms = 100;
    t.backoff_max_ms = 1000;
    cfg
}

/// The topic root of `cfg`'s tower.
pub fn root(cfg: &TowerConfig) -> String {
    format!("endotower/v1/{}", cfg.tower.id)
}
