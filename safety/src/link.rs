//! The island's own Modbus client: one connection per device (TCP) or per
//! serial line (RTU, several devices by unit id, one request at a time), as
//! an explicit state machine (Connecting -> Connected -> Degraded -> Lost).
//!
//! It never logs: every transition is counted with its reason in
//! [`LinkCounters`] (atomics), and the management plane reports them, rate
//! limited, off the island's thread. After a timeout or a framing error the
//! connection is dropped, never reused: a late reply must not be taken as
//! the answer to the next request (HZ-011).

use crate::config::Transport;
use crate::modbus::{rtu, tcp, FrameError, Request, MAX_FRAME};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The state of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    Connecting = 0,
    Connected = 1,
    Degraded = 2,
    Lost = 3,
}

impl LinkState {
    pub fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connected,
            2 => LinkState::Degraded,
            3 => LinkState::Lost,
            _ => LinkState::Connecting,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Degraded => "degraded",
            LinkState::Lost => "lost",
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("not connected (reconnecting after backoff)")]
    Backoff,
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("timed out")]
    Timeout,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The reason of the last transition, as a code (no strings in the cycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    None = 0,
    Opened = 1,
    Ok = 2,
    ConnectFailed = 3,
    Timeout = 4,
    Io = 5,
    Exception = 6,
    Frame = 7,
    BackoffElapsed = 8,
}

impl Reason {
    pub fn from_u8(v: u8) -> Reason {
        match v {
            1 => Reason::Opened,
            2 => Reason::Ok,
            3 => Reason::ConnectFailed,
            4 => Reason::Timeout,
            5 => Reason::Io,
            6 => Reason::Exception,
            7 => Reason::Frame,
            8 => Reason::BackoffElapsed,
            _ => Reason::None,
        }
    }
    pub fn text(self) -> &'static str {
        match self {
            Reason::None => "-",
            Reason::Opened => "connection opened",
            Reason::Ok => "request answered",
            Reason::ConnectFailed => "connect failed",
            Reason::Timeout => "request timed out",
            Reason::Io => "i/o error",
            Reason::Exception => "Modbus exception reply",
            Reason::Frame => "malformed or mismatched reply",
            Reason::BackoffElapsed => "backoff elapsed, reconnecting",
        }
    }
}

/// Lock-free counters of one link, read by the management plane.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub state: AtomicU8,
    pub transitions: AtomicU64,
    pub last_reason: AtomicU8,
    pub requests: AtomicU64,
    pub timeouts: AtomicU64,
    pub errors: AtomicU64,
    /// Replies that were malformed or answered another request (CRC,
    /// transaction, unit, function, length): on a serial line, the mark of
    /// two frames on the wire at once.
    pub frame_errors: AtomicU64,
}

impl LinkCounters {
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// Reconnect and give-up policy of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// Per-request (and connect) timeout.
    pub timeout: Duration,
    /// Consecutive failures that make a Degraded link Lost.
    pub lost_after: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

enum Io {
    Tcp(TcpStream),
    Serial(AsyncFd<OwnedFd>),
}

/// One connection (TCP) or serial line (RTU) with its state machine.
pub struct IslandLink {
    transport: Transport,
    timing: LinkTiming,
    io: Option<Io>,
    tid: u16,
    state: LinkState,
    failures: u32,
    backoff: Duration,
    retry_at: Option<Instant>,
    counters: std::sync::Arc<LinkCounters>,
    frame: [u8; MAX_FRAME],
}

impl IslandLink {
    pub fn new(transport: Transport, timing: LinkTiming, counters: std::sync::Arc<LinkCounters>) -> Self {
        counters.state.store(LinkState::Connecting as u8, Ordering::Relaxed);
        Self {
            transport,
            timing,
            io: None,
            tid: 0,
            state: LinkState::Connecting,
            failures: 0,
            backoff: timing.backoff_initial,
            retry_at: None,
            counters,
            frame: [0; MAX_FRAME],
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    fn transition(&mut self, to: LinkState, reason: Reason) {
        if self.state == to {
            return;
        }
        self.state = to;
        self.counters.state.store(to as u8, Ordering::Relaxed);
        self.counters.last_reason.store(reason as u8, Ordering::Relaxed);
        self.counters.transitions.fetch_add(1, Ordering::Relaxed);
    }

    async fn open(&self) -> Result<Io, LinkError> {
        let open = async {
            match &self.transport {
                Transport::Tcp(addr) => open_tcp(*addr).await.map(Io::Tcp),
                Transport::Rtu { path, baud } => open_serial(path, *baud).map(Io::Serial),
            }
        };
        match tokio::time::timeout(self.timing.timeout, open).await {
            Ok(Ok(io)) => Ok(io),
            Ok(Err(e)) => Err(LinkError::Connect(e)),
            Err(_) => Err(LinkError::Connect(io::Error::new(io::ErrorKind::TimedOut, "no connection within the timeout"))),
        }
    }

    async fn ensure_open(&mut self) -> Result<(), LinkError> {
        if self.io.is_some() {
            return Ok(());
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(LinkError::Backoff);
        }
        if self.state == LinkState::Lost {
            self.transition(LinkState::Connecting, Reason::BackoffElapsed);
        }
        match self.open().await {
            Ok(io) => {
                self.io = Some(io);
                self.retry_at = None;
                if self.state == LinkState::Connecting {
                    self.transition(LinkState::Connected, Reason::Opened);
                    self.backoff = self.timing.backoff_initial;
                }
                Ok(())
            }
            Err(e) => {
                self.failed(Reason::ConnectFailed);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(self.timing.backoff_max);
                Err(e)
            }
        }
    }

    fn failed(&mut self, reason: Reason) {
        self.failures += 1;
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if reason == Reason::Timeout {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let to = if self.failures >= self.timing.lost_after {
            LinkState::Lost
        } else if self.state == LinkState::Connecting {
            LinkState::Connecting
        } else {
            LinkState::Degraded
        };
        if to == LinkState::Lost && self.state != LinkState::Lost {
            self.retry_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(self.timing.backoff_max);
        }
        self.transition(to, reason);
    }

    /// Drop the connection: the next request opens a fresh one.
    pub fn reset(&mut self) {
        self.io = None;
    }

    /// Send `req` to `unit` and wait for its reply (bounded by the timeout).
    /// On a read, the registers are written into `regs`.
    pub async fn request(&mut self, unit: u8, req: Request<'_>, regs: &mut [u16]) -> Result<(), LinkError> {
        self.ensure_open().await?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = self.timing.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(unit, req, regs)).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout),
        };
        match &result {
            Ok(()) => {
                self.failures = 0;
                if self.state != LinkState::Connected {
                    self.transition(LinkState::Connected, Reason::Ok);
                    self.backoff = self.timing.backoff_initial;
                }
            }
            // An exception is a well-formed answer: the connection is fine.
            Err(LinkError::Frame(FrameError::Exception(_))) => self.failed(Reason::Exception),
            Err(e) => {
                let reason = match e {
                    LinkError::Timeout => Reason::Timeout,
                    LinkError::Io(_) => Reason::Io,
                    _ => {
                        self.counters.frame_errors.fetch_add(1, Ordering::Relaxed);
                        Reason::Frame
                    }
                };
                self.io = None;
                self.failed(reason);
            }
        }
        result
    }

    async fn exchange(&mut self, unit: u8, req: Request<'_>, regs: &mut [u16]) -> Result<(), LinkError> {
        let frame = &mut self.frame;
        match self.io.as_mut().ok_or(LinkError::Backoff)? {
            Io::Tcp(s) => {
                self.tid = self.tid.wrapping_add(1);
                let n = tcp::encode(&req, unit, self.tid, frame)?;
                s.write_all(&frame[..n]).await?;
                let mut header = [0u8; tcp::HEADER];
                s.read_exact(&mut header).await?;
                let len = tcp::pdu_len(&header)?;
                s.read_exact(&mut frame[..len]).await?;
                tcp::check(&req, unit, self.tid, &header, &frame[..len], regs)?;
            }
            Io::Serial(fd) => {
                // Whatever is waiting on the line belongs to no request of ours.
                // SAFETY: tcflush on an open tty fd.
                unsafe { libc::tcflush(fd.get_ref().as_raw_fd(), libc::TCIFLUSH) };
                let n = rtu::encode(&req, unit, frame)?;
                serial_write_all(fd, &frame[..n]).await?;
                serial_read_exact(fd, &mut frame[..2]).await?;
                let len = rtu::reply_len(&req, [frame[0], frame[1]]);
                if len > frame.len() {
                    return Err(FrameError::Length { expected: frame.len(), got: len }.into());
                }
                serial_read_exact(fd, &mut frame[2..len]).await?;
                rtu::check(&req, unit, &frame[..len], regs)?;
            }
        }
        Ok(())
    }
}

async fn open_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn baud_constant(baud: u32) -> io::Result<libc::speed_t> {
    Ok(match baud {
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        921600 => libc::B921600,
        1_000_000 => libc::B1000000,
        2_000_000 => libc::B2000000,
        4_000_000 => libc::B4000000,
        other => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unsupported baud rate {other}"))),
    })
}

/// Open a serial line raw, 8N1, non-blocking, input flushed.
fn open_serial(path: &str, baud: u32) -> io::Result<AsyncFd<OwnedFd>> {
    let speed = baud_constant(baud)?;
    let c_path = std::ffi::CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in serial path"))?;
    // SAFETY: open with a valid C string; the fd is owned right away.
    let raw: RawFd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly opened fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: termios calls on our open fd with a zeroed, then filled, struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(raw, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        t.c_cflag |= libc::CLOCAL | libc::CREAD;
        t.c_cflag &= !(libc::CSTOPB | libc::PARENB | libc::CRTSCTS);
        t.c_cc[libc::VMIN] = 0;
        t.c_cc[libc::VTIME] = 0;
        if libc::cfsetispeed(&mut t, speed) != 0 || libc::cfsetospeed(&mut t, speed) != 0 || libc::tcsetattr(raw, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::tcflush(raw, libc::TCIOFLUSH);
    }
    // SAFETY: `fd` is a valid open descriptor owned by the AsyncFd, never
    // replaced or closed while registered.
    unsafe { AsyncFd::register(fd).map_err(|e| e.into()) }
}

async fn serial_write_all(fd: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        // SAFETY: write from a valid slice to our open fd.
        match guard.try_io(|inner| {
            let n = unsafe { libc::write(inner.get_ref().as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

async fn serial_read_exact(fd: &AsyncFd<OwnedFd>, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let mut guard = fd.readable().await?;
        // SAFETY: read into a valid mutable slice from our open fd.
        match guard.try_io(|inner| {
            let n = unsafe { libc::read(inner.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else if n == 0 {
                // No data though readable (VMIN = 0): wait for the next readiness.
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            } else {
                Ok(n as usize)
            }
        }) {
            Ok(Ok(n)) => buf = &mut buf[n..],
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
