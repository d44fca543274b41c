//! Real inference servers for the remote backend's tests: the `kserve`
//! package's ModelServer and NVIDIA Triton (through `nvidia-pytriton`), each
//! serving the shipped detector through ONNX Runtime (tests/peers/*.py,
//! installed into .deps/venv by ./x). On 127.0.0.1, on free ports; stopped
//! when dropped.

pub use super::mqtt::free_port;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    KServe,
    Triton,
}

pub struct InferenceServer {
    child: Option<Child>,
    pub kind: ServerKind,
    pub grpc_port: u16,
    ports: Vec<u16>,
}

pub fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// Whether the test venv has the servers (./x setup); in CI it must.
pub fn servers_installed() -> bool {
    // One import each: the two register the same protocol types in one
    // process's protobuf pool and refuse to load together.
    let has = |module: &str| {
        Command::new(repo(".deps/venv/bin/python"))
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = has("kserve") && has("pytriton");
    assert!(ok || std::env::var("CI").is_err(), "CI=true but kserve / nvidia-pytriton are not in .deps/venv: run ./x setup");
    ok
}

impl InferenceServer {
    /// Start a server on a fresh gRPC port and wait for its READY line.
    pub fn start(kind: ServerKind, extra: &[&str]) -> InferenceServer {
        Self::start_on(kind, free_port(), extra)
    }

    /// Start a server on `grpc_port` (a restart keeps the port).
    pub fn start_on(kind: ServerKind, grpc_port: u16, extra: &[&str]) -> InferenceServer {
        let mut ports = vec![grpc_port, free_port()];
        let script = match kind {
            ServerKind::KServe => "tests/peers/kserve_detector.py",
            ServerKind::Triton => {
                ports.push(free_port());
                "tests/peers/triton_detector.py"
            }
        };
        let mut cmd = Command::new(repo(".deps/venv/bin/python"));
        cmd.arg(repo(script)).args(["--grpc-port", &ports[0].to_string(), "--http-port", &ports[1].to_string()]);
        if kind == ServerKind::Triton {
            cmd.args(["--metrics-port", &ports[2].to_string()]);
        }
        let mut child = cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("the test venv's python");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(());
                }
            }
        });
        let started = Instant::now();
        if rx.recv_timeout(Duration::from_secs(90)).is_err() {
            let _ = child.kill();
            panic!("{kind:?} server did not come up in 90 s");
        }
        eprintln!("{kind:?} server ready on {} in {:.1} s", ports[0], started.elapsed().as_secs_f64());
        InferenceServer { child: Some(child), kind, grpc_port: ports[0], ports }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGKILL: the server vanishes mid-request.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a stalled server (connections stay open).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

impl Drop for InferenceServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as above; a stopped server must be continued to see SIGTERM.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
