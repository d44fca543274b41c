//! `endotower device-check ADDR --device NAME`: probes a real device over
//! Modbus TCP against the device interface contract
//! (`docs/device-interface.md`) and reports each rule as pass or fail, with
//! what it measured. Run it against a device alone: a running tower's
//! island keeps the heartbeat going and hides the fail-safe check.

use endotower_actors::device_interface::requests;
use endotower_actors::registers::{self, camera, insufflator, light, pedal, Access, RegisterSpec, TABLE_LEN};
use endotower_safety::modbus::{tcp, FrameError, Request, MAX_FRAME};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The device kinds the contract covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    Insufflator,
    Light,
    Camera,
    Pedal,
}

impl DeviceKind {
    fn name(self) -> &'static str {
        match self {
            DeviceKind::Insufflator => "insufflator",
            DeviceKind::Light => "light",
            DeviceKind::Camera => "camera",
            DeviceKind::Pedal => "pedal",
        }
    }
    fn map(self) -> &'static [RegisterSpec] {
        match self {
            DeviceKind::Insufflator => insufflator::MAP,
            DeviceKind::Light => light::MAP,
            DeviceKind::Camera => camera::MAP,
            DeviceKind::Pedal => pedal::MAP,
        }
    }
    pub fn default_unit(self) -> u8 {
        match self {
            DeviceKind::Insufflator => insufflator::UNIT,
            DeviceKind::Light => light::UNIT,
            DeviceKind::Camera => camera::UNIT,
            DeviceKind::Pedal => pedal::UNIT,
        }
    }
    /// (sensor block length, SAMPLE_SEQ, STATUS word, heartbeat)
    fn layout(self) -> (u16, u16, u16, u16) {
        match self {
            DeviceKind::Insufflator => (insufflator::SENSOR_LEN, insufflator::SAMPLE_SEQ, insufflator::STATUS, insufflator::HEARTBEAT),
            DeviceKind::Light => (light::SENSOR_LEN, light::SAMPLE_SEQ, light::STATUS, light::HEARTBEAT),
            DeviceKind::Camera => (camera::SENSOR_LEN, camera::SAMPLE_SEQ, camera::STATUS, camera::HEARTBEAT),
            DeviceKind::Pedal => (pedal::SENSOR_LEN, pedal::SAMPLE_SEQ, pedal::STATE, pedal::HEARTBEAT),
        }
    }
}

/// STATUS b3 on every device: heartbeat fail-safe.
const FAILSAFE_BIT: u16 = 1 << 3;
/// How fresh a sample must be (`safety.stale_ms`).
const STALE: Duration = Duration::from_millis(20);
/// The device's heartbeat fail-safe, with a margin for the check's own polling.
const FAILSAFE_AFTER: Duration = Duration::from_millis(300);

/// One rule of the contract, checked.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rule: &'static str,
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot connect to {addr}")]
    Connect { addr: SocketAddr, source: std::io::Error },
}

#[derive(Debug)]
enum Reply {
    Ok,
    Exception(u8),
    Timeout,
    Broken(String),
}

/// A plain Modbus TCP client that can also send malformed frames.
struct Client {
    addr: SocketAddr,
    stream: TcpStream,
    tid: u16,
    unit: u8,
    timeout: Duration,
}

impl Client {
    async fn connect(addr: SocketAddr, unit: u8, timeout: Duration) -> std::io::Result<Client> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection within 2 s"))??;
        stream.set_nodelay(true)?;
        Ok(Client { addr, stream, tid: 0, unit, timeout })
    }

    async fn reconnect(&mut self) -> std::io::Result<()> {
        *self = Client::connect(self.addr, self.unit, self.timeout).await?;
        Ok(())
    }

    /// Send a PDU (raw bytes) as `unit`; the reply's PDU, or why there is none.
    async fn raw(&mut self, unit: u8, pdu: &[u8], wait: Duration) -> Result<Vec<u8>, Reply> {
        self.tid = self.tid.wrapping_add(1);
        let mut frame = Vec::with_capacity(7 + pdu.len());
        frame.extend_from_slice(&self.tid.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        frame.push(unit);
        frame.extend_from_slice(pdu);
        let tid = self.tid;
        let exchange = async {
            self.stream.write_all(&frame).await.map_err(|e| Reply::Broken(e.to_string()))?;
            let mut header = [0u8; tcp::HEADER];
            self.stream.read_exact(&mut header).await.map_err(|e| Reply::Broken(format!("connection closed: {e}")))?;
            let len = tcp::pdu_len(&header).map_err(|e| Reply::Broken(e.to_string()))?;
            let mut body = vec![0u8; len];
            self.stream.read_exact(&mut body).await.map_err(|e| Reply::Broken(e.to_string()))?;
            if u16::from_be_bytes([header[0], header[1]]) != tid {
                return Err(Reply::Broken("reply for another transaction".into()));
            }
            Ok(body)
        };
        match tokio::time::timeout(wait, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Reply::Timeout),
        }
    }

    /// A well-formed request; registers of a read into `regs`.
    async fn request(&mut self, req: Request<'_>, regs: &mut [u16]) -> Reply {
        let mut pdu = [0u8; MAX_FRAME];
        let n = match req.pdu(&mut pdu) {
            Ok(n) => n,
            Err(e) => return Reply::Broken(e.to_string()),
        };
        let unit = self.unit;
        let body = match self.raw(unit, &pdu[..n], self.timeout.max(Duration::from_millis(200))).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match req.check_reply(&body, regs) {
            Ok(()) => Reply::Ok,
            Err(FrameError::Exception(c)) => Reply::Exception(c),
            Err(e) => Reply::Broken(e.to_string()),
        }
    }

    async fn read(&mut self, addr: u16, qty: u16) -> Result<Vec<u16>, Reply> {
        let mut regs = vec![0u16; usize::from(qty)];
        match self.request(Request::Read { addr, qty }, &mut regs).await {
            Reply::Ok => Ok(regs),
            other => Err(other),
        }
    }

    async fn write(&mut self, addr: u16, values: &[u16]) -> Reply {
        self.request(Request::Write { addr, values }, &mut []).await
    }
}

fn describe(r: &Reply) -> String {
    match r {
        Reply::Ok => "answered".into(),
        Reply::Exception(c) => format!("exception 0x{c:02x}"),
        Reply::Timeout => "no answer".into(),
        Reply::Broken(why) => why.clone(),
    }
}

fn outcome(rule: &'static str, pass: bool, detail: impl Into<String>) -> Outcome {
    Outcome { rule, pass, detail: detail.into() }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize).copied().unwrap_or(f64::NAN)
}

/// Run every check of the contract for `device` at `addr`.
pub async fn check(addr: SocketAddr, device: DeviceKind, unit: u8, timeout: Duration) -> Result<Vec<Outcome>, CheckError> {
    let mut c = Client::connect(addr, unit, timeout).await.map_err(|source| CheckError::Connect { addr, source })?;
    let map = device.map();
    let (sensor_len, seq_addr, status_addr, hb_addr) = device.layout();
    let mut out = Vec::new();

    // 1. The island's read, and its response time.
    let mut times = Vec::new();
    let mut first = None;
    for _ in 0..200 {
        let t0 = Instant::now();
        match c.read(0, sensor_len).await {
            Ok(_) => times.push(t0.elapsed().as_secs_f64() * 1e6),
            Err(r) => {
                first.get_or_insert(r);
                let _ = c.reconnect().await;
            }
        }
    }
    match &first {
        Some(r) if times.is_empty() => out.push(outcome("FC 3 read of the sensor block", false, describe(r))),
        _ => out.push(outcome("FC 3 read of the sensor block", first.is_none(), format!("{} of 200 answered", times.len()))),
    }
    let (p50, p99) = (percentile(&mut times.clone(), 50.0), percentile(&mut times, 99.0));
    let limit = timeout.as_secs_f64() * 1e6;
    out.push(outcome(
        "response time within safety.timeout_us",
        p99 <= limit,
        format!("p50 {p50:.0} us, p99 {p99:.0} us (limit {limit:.0} us, request to reply, over TCP from here)"),
    ));

    // 2. The control plane's read, across unassigned words.
    let control_len = requests()
        .into_iter()
        .find(|(name, _, _)| *name == device.name())
        .and_then(|(_, _, r)| r.into_iter().find(|r| r.from == "control plane" && r.function.starts_with("FC 3")).map(|r| r.count))
        .unwrap_or(sensor_len);
    let r = c.read(0, control_len).await;
    out.push(outcome(
        "FC 3 read of the control plane's block (unassigned words included)",
        r.is_ok(),
        match &r {
            Ok(_) => format!("0..={} answered", control_len - 1),
            Err(e) => describe(e),
        },
    ));

    // 3. SAMPLE_SEQ moves at least every 20 ms.
    let (mut last, mut changed_at, mut worst, mut changes) = (None, Instant::now(), Duration::ZERO, 0);
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        if let Ok(w) = c.read(seq_addr, 1).await {
            let now = Instant::now();
            if last != Some(w[0]) {
                if last.is_some() {
                    worst = worst.max(now.duration_since(changed_at));
                    changes += 1;
                }
                changed_at = now;
                last = Some(w[0]);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    worst = worst.max(Instant::now().duration_since(changed_at));
    out.push(outcome(
        "SAMPLE_SEQ advances at least every 20 ms",
        changes > 0 && worst <= STALE + Duration::from_millis(5),
        format!("{changes} changes in 600 ms, longest without one {} ms", worst.as_millis()),
    ));

    // 4. Readings valid and plausible.
    if let Ok(w) = c.read(0, sensor_len).await {
        let bad: Vec<String> = map
            .iter()
            .filter(|s| s.access == Access::Read && s.signed && s.unit != "count" && s.addr < sensor_len)
            .filter_map(|s| {
                let raw = w[usize::from(s.addr)];
                let v = registers::decode_signed(raw, s.scale);
                let span = if s.unit == "mmHg" { (-10.0, 80.0) } else { (-20.0, 150.0) };
                match v {
                    None => Some(format!("{} reads 0x8000", s.name)),
                    Some(v) if v < span.0 || v > span.1 => Some(format!("{} = {v} {} outside {:?}", s.name, s.unit, span)),
                    Some(_) => None,
                }
            })
            .collect();
        out.push(outcome(
            "sensor readings valid and in span",
            bad.is_empty(),
            if bad.is_empty() { "all valid".into() } else { bad.join("; ") },
        ));
    }

    // 5. Writes to sensor words, undocumented words, and out-of-range values.
    let r = c.write(0, &[0]).await;
    out.push(outcome("a write to a sensor word gets exception 0x02", matches!(r, Reply::Exception(2)), describe(&r)));
    if matches!(r, Reply::Timeout | Reply::Broken(_)) {
        let _ = c.reconnect().await;
    }
    if let Some(a) = (registers::CONTROL_BASE..TABLE_LEN).find(|a| registers::spec(map, *a).is_none()) {
        let r = c.write(a, &[1]).await;
        out.push(outcome(
            "a write to an undocumented word gets exception 0x02",
            matches!(r, Reply::Exception(2)),
            format!("word {a}: {}", describe(&r)),
        ));
        if matches!(r, Reply::Timeout | Reply::Broken(_)) {
            let _ = c.reconnect().await;
        }
    }
    if let Some((s, bad)) = map
        .iter()
        .filter(|s| s.access == Access::ReadWrite)
        .find_map(|s| s.range.filter(|(_, hi)| *hi < u16::MAX).map(|(_, hi)| (s, hi + 1)))
    {
        let r = c.write(s.addr, &[bad]).await;
        out.push(outcome(
            "a value out of its register's range gets exception 0x03",
            matches!(r, Reply::Exception(3)),
            format!("{} = {bad}: {}", s.name, describe(&r)),
        ));
        if matches!(r, Reply::Timeout | Reply::Broken(_)) {
            let _ = c.reconnect().await;
        }
    }

    // 6. A malformed FC 16 gets 0x03 and the connection stays usable.
    let malformed = [0x10, 0, hb_addr as u8, 0, 2, 3, 0, 0, 0];
    let unit = c.unit;
    let r = match c.raw(unit, &malformed, Duration::from_millis(200)).await {
        Ok(pdu) if pdu.len() >= 2 && pdu[0] == 0x90 => Reply::Exception(pdu[1]),
        Ok(_) => Reply::Ok,
        Err(r) => r,
    };
    let still = c.read(seq_addr, 1).await.is_ok();
    out.push(outcome(
        "an FC 16 whose byte count is not twice its quantity gets exception 0x03, the connection stays open",
        matches!(r, Reply::Exception(3)) && still,
        format!("{}; next request {}", describe(&r), if still { "answered" } else { "failed (connection lost)" }),
    ));
    if !still {
        let _ = c.reconnect().await;
    }

    // 7. Another unit id gets no answer.
    let other = if unit == 99 { 98 } else { 99 };
    let r = match c.raw(other, &[0x03, 0, 0, 0, 1], Duration::from_millis(100)).await {
        Ok(_) => Reply::Ok,
        Err(r) => r,
    };
    out.push(outcome(
        "a request for another unit id gets no answer",
        matches!(r, Reply::Timeout),
        format!("unit {other}: {}", describe(&r)),
    ));
    let _ = c.reconnect().await;

    // 8. Heartbeat fail-safe: in after 300 ms of silence, out at the next change.
    let status = |w: &[u16]| w[0] & FAILSAFE_BIT != 0;
    tokio::time::sleep(FAILSAFE_AFTER + Duration::from_millis(100)).await;
    let silent = c.read(status_addr, 1).await.map(|w| status(&w));
    let mut beat = 1u16;
    let mut left = false;
    for _ in 0..50 {
        beat = beat.wrapping_add(1);
        let _ = c.write(hb_addr, &[beat]).await;
        if c.read(status_addr, 1).await.is_ok_and(|w| !status(&w)) {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.push(outcome(
        "fail-safe after 300 ms without a heartbeat change, left at the next change",
        matches!(silent, Ok(true)) && left,
        format!(
            "STATUS b3 {} after 400 ms of silence; {} once HEARTBEAT changed",
            match &silent {
                Ok(true) => "set".to_string(),
                Ok(false) => "NOT set".to_string(),
                Err(e) => describe(e),
            },
            if left { "cleared" } else { "NOT cleared" }
        ),
    ));

    // 9. The safety word is applied and echoed.
    let safety = match device {
        DeviceKind::Insufflator => Some((insufflator::SAFETY_CMD, insufflator::SAFETY_ECHO, insufflator::safety_cmd::INHIBIT_INFLOW, 0u16)),
        DeviceKind::Light => Some((light::SAFETY_CAP, light::SAFETY_ECHO, 50, 100)),
        _ => None,
    };
    if let Some((word, echo, on, off)) = safety {
        beat = beat.wrapping_add(1);
        let w = c.write(word, &[on, beat]).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let read = c.read(echo, 1).await.map(|w| w[0]);
        beat = beat.wrapping_add(1);
        let _ = c.write(word, &[off, beat]).await;
        out.push(outcome(
            "the safety word is accepted with the heartbeat in one FC 16 and read back in SAFETY_ECHO",
            matches!(w, Reply::Ok) && read.as_ref().is_ok_and(|v| *v == on),
            format!("wrote {on}: {}; SAFETY_ECHO {}", describe(&w), read.map_or_else(|e| describe(&e), |v| v.to_string())),
        ));
    }
    Ok(out)
}

/// Print the outcomes as a table; true if every rule passed.
pub fn print(device: DeviceKind, addr: SocketAddr, outcomes: &[Outcome]) -> bool {
    println!("device-check {} at {addr}", device.name());
    for o in outcomes {
        println!("{} {}: {}", if o.pass { "PASS" } else { "FAIL" }, o.rule, o.detail);
    }
    let failed = outcomes.iter().filter(|o| !o.pass).count();
    println!("{} of {} rules pass (docs/device-interface.md)", outcomes.len() - failed, outcomes.len());
    failed == 0
}
