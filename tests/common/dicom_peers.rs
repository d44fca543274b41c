//! Debian dcmtk as the tower's DICOM peers: `storescp` as the PACS,
//! `wlmscpfs` as the worklist, `dcmdump` to read what arrived. Both servers
//! run on 127.0.0.1 (through tests/peers/bind_loopback.c: dcmtk has no
//! listen-address option) on a free port, and are stopped when dropped.

use super::inference_server::{free_port, repo};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether dcmtk is installed (./x setup); in CI it must be.
pub fn dcmtk_installed() -> bool {
    let ok = Command::new("storescp").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok || std::env::var("CI").is_err(), "CI=true but dcmtk is not installed: run ./x setup");
    ok
}

/// The loopback shim, built once per test process.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("endotower-bind-loopback-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(repo("tests/peers/bind_loopback.c"))
            .arg("-ldl")
            .status()
            .expect("cc (build-essential, installed by ./x)");
        assert!(status.success(), "cannot build the loopback shim");
        out
    })
}

/// A dcmtk server process, stopped (SIGCONT, SIGTERM) when dropped.
pub struct DicomServer {
    child: Option<Child>,
    pub port: u16,
}

impl DicomServer {
    fn start(program: &str, args: &[&str], port: u16, log: Option<&Path>) -> DicomServer {
        // dcmtk logs to stderr; both streams go to the log.
        let file = log.map(|p| std::fs::File::create(p).unwrap());
        let (out, err) = match file {
            Some(f) => (Stdio::from(f.try_clone().unwrap()), Stdio::from(f)),
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(program)
            .args(args)
            .arg(port.to_string())
            .env("LD_PRELOAD", shim())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let server = DicomServer { child: Some(child), port };
        // dcmtk prints nothing when it listens: wait for a connect.
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "{program} did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The PACS: `storescp` writing each instance to `dir` as
    /// `VLe.<SOP Instance UID>` (a resent instance overwrites its file), and
    /// one `storing DICOM file` line per instance received to `log`.
    pub fn storescp(dir: &Path, port: u16, log: &Path) -> DicomServer {
        std::fs::create_dir_all(dir).unwrap();
        Self::start("storescp", &["-v", "-aet", "PACS", "-od", dir.to_str().unwrap()], port, Some(log))
    }

    /// The worklist: `wlmscpfs` serving the items in `dir/<called AE>/`.
    pub fn wlmscpfs(dir: &Path) -> DicomServer {
        Self::start("wlmscpfs", &["-s", "-dfp", dir.to_str().unwrap()], free_port(), None)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DicomServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `dcmdump`'s value of `keyword` in `file` (numeric UIDs).
pub fn dcmdump(file: &Path, keyword: &str) -> String {
    let out = Command::new("dcmdump").args(["-q", "-Un", "+P", keyword]).arg(file).output().expect("dcmdump");
    assert!(out.status.success(), "dcmdump {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default();
    match (line.find('['), line.rfind(']')) {
        (Some(a), Some(b)) if b > a => line[a + 1..b].to_string(),
        _ => line.to_string(),
    }
}

/// A worklist directory for the called AE `ae` holding the test item
/// (tests/peers/worklist_item.dump) scheduled `today`.
pub fn worklist_dir(root: &Path, ae: &str, today: &str) -> PathBuf {
    let dir = root.join(ae);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lockfile"), b"").unwrap();
    let dump = std::fs::read_to_string(repo("tests/peers/worklist_item.dump")).unwrap().replace("[20260417]", &format!("[{today}]"));
    let dump_path = root.join("item.dump");
    std::fs::write(&dump_path, dump).unwrap();
    let out = Command::new("dump2dcm").args(["-g", "+te"]).arg(&dump_path).arg(dir.join("item.wl")).output().expect("dump2dcm");
    assert!(out.status.success(), "dump2dcm: {}", String::from_utf8_lossy(&out.stderr));
    root.to_path_buf()
}
