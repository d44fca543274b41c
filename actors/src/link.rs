//! A Modbus link as an explicit state machine: Connecting -> Connected ->
//! Degraded -> Lost, with timeouts, reconnect backoff and read-back of writes.
//!
//! tokio-modbus clients have no timeout of their own, and after a timeout a
//! connection cannot be trusted: TCP stays one reply behind (every later call
//! fails with a header mismatch), and RTU takes a late reply as the answer to
//! the *next* request. So every timeout, transport or protocol error drops the
//! connection; the next request reconnects (TCP) or reopens the port (RTU).
//! A value read on a connection that has timed out is never returned.

use crate::config::{LinkConfig, Transport};
use futures::future::BoxFuture;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::Slave;

/// The state of one device link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Opening the transport.
    Connecting,
    /// Requests succeed.
    Connected,
    /// The last request(s) failed; not yet given up.
    Degraded,
    /// Given up after repeated failures; reconnecting with backoff.
    Lost,
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Degraded => "degraded",
            LinkState::Lost => "lost",
        };
        f.write_str(s)
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("not connected (waiting {0:?} before reconnecting)")]
    Backoff(Duration),
    #[error("connect to {transport} failed: {source}")]
    Connect { transport: String, source: std::io::Error },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("transport error: {0}")]
    Transport(#[from] tokio_modbus::Error),
    #[error("device answered with Modbus exception {0}")]
    Exception(tokio_modbus::ExceptionCode),
    #[error("short reply: asked for {asked} registers at {addr}, got {got}")]
    ShortReply { addr: u16, asked: u16, got: usize },
    #[error("read-back mismatch at register {addr}: wrote {wrote:?}, read {read:?}")]
    ReadbackMismatch { addr: u16, wrote: Vec<u16>, read: Vec<u16> },
    #[error("link dropped (fault injection)")]
    Dropped,
}

impl LinkError {
    /// Errors after which the connection itself cannot be trusted.
    fn poisons_connection(&self) -> bool {
        matches!(self, LinkError::Timeout(_) | LinkError::Transport(_) | LinkError::ShortReply { .. } | LinkError::Dropped)
    }
}

/// A Modbus client connection with its state machine.
pub struct ModbusLink {
    name: String,
    cfg: LinkConfig,
    timeout: Duration,
    ctx: Option<Context>,
    state: LinkState,
    failures: u32,
    backoff: Duration,
    retry_at: Option<Instant>,
    transitions: u64,
    /// Test hook: a dropped link fails every request.
    fault: Option<crate::fault_injection::LinkFault>,
}

impl ModbusLink {
    pub fn new(name: impl Into<String>, cfg: LinkConfig) -> Self {
        let backoff = Duration::from_millis(cfg.backoff_initial_ms);
        let timeout = cfg.timeout();
        Self {
            name: name.into(),
            cfg,
            timeout,
            ctx: None,
            state: LinkState::Connecting,
            failures: 0,
            backoff,
            retry_at: None,
            transitions: 0,
            fault: None,
        }
    }

    /// Fail every request while `fault` says the link is dropped (test hook).
    pub fn with_fault(mut self, fault: crate::fault_injection::LinkFault) -> Self {
        self.fault = Some(fault);
        self
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of state transitions so far (for tests and telemetry).
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Override the per-request timeout (the safety island uses microseconds).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn transition(&mut self, to: LinkState, reason: &str) {
        if self.state == to {
            return;
        }
        let from = self.state;
        self.state = to;
        self.transitions += 1;
        match to {
            LinkState::Connected => {
                tracing::info!(link = %self.name, %from, %to, reason, "link state")
            }
            _ => tracing::warn!(link = %self.name, %from, %to, reason, "link state"),
        }
    }

    async fn open(cfg: LinkConfig, timeout: Duration) -> Result<Context, LinkError> {
        let transport = cfg.transport.to_string();
        let slave = Slave(cfg.unit);
        let connect = async {
            match &cfg.transport {
                Transport::Tcp { addr } => {
                    let addr: std::net::SocketAddr =
                        addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
                    let stream = tokio::net::TcpStream::connect(addr).await?;
                    stream.set_nodelay(true)?;
                    Ok(tokio_modbus::client::tcp::attach_slave(stream, slave))
                }
                Transport::Rtu { path, baud } => {
                    use tokio_serial::SerialPort;
                    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path, *baud)).map_err(std::io::Error::from)?;
                    // Anything still in the buffers belongs to an earlier request.
                    port.clear(tokio_serial::ClearBuffer::All).map_err(std::io::Error::from)?;
                    Ok(tokio_modbus::client::rtu::attach_slave(port, slave))
                }
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(ctx)) => Ok(ctx),
            Ok(Err(source)) => Err(LinkError::Connect { transport, source }),
            Err(_) => Err(LinkError::Connect {
                transport,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no connection within {timeout:?}")),
            }),
        }
    }

    /// Attach an already-open client context (used with serial pairs in tests).
    pub fn attach(&mut self, ctx: Context) {
        self.ctx = Some(ctx);
        self.transition(LinkState::Connected, "attached");
    }

    async fn ensure_connected(&mut self) -> Result<(), LinkError> {
        if self.ctx.is_some() {
            return Ok(());
        }
        if let Some(at) = self.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(LinkError::Backoff(at - now));
            }
        }
        if self.state == LinkState::Lost {
            self.transition(LinkState::Connecting, "backoff elapsed, reconnecting");
        }
        match Self::open(self.cfg.clone(), self.timeout).await {
            Ok(ctx) => {
                self.ctx = Some(ctx);
                self.retry_at = None;
                if self.state == LinkState::Connecting {
                    self.transition(LinkState::Connected, &format!("opened {}", self.cfg.transport));
                    self.reset_backoff();
                }
                Ok(())
            }
            Err(e) => {
                self.note_failure(&e);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_millis(self.cfg.backoff_max_ms));
                Err(e)
            }
        }
    }

    fn reset_backoff(&mut self) {
        self.backoff = Duration::from_millis(self.cfg.backoff_initial_ms);
    }

    fn note_success(&mut self) {
        self.failures = 0;
        self.reset_backoff();
        if self.state != LinkState::Connected {
            self.transition(LinkState::Connected, "request succeeded");
        }
    }

    fn note_failure(&mut self, e: &LinkError) {
        self.failures += 1;
        let reason = e.to_string();
        match self.state {
            LinkState::Connecting => {
                if self.failures >= self.cfg.lost_after {
                    self.transition(LinkState::Lost, &reason);
                } else {
                    tracing::debug!(link = %self.name, %reason, "connect attempt failed");
                }
            }
            LinkState::Connected => self.transition(LinkState::Degraded, &reason),
            LinkState::Degraded if self.failures >= self.cfg.lost_after => {
                let why = format!("{} consecutive failures, last: {reason}", self.failures);
                self.transition(LinkState::Lost, &why)
            }
            _ => {}
        }
    }

    async fn run<T, F>(&mut self, op: F) -> Result<T, LinkError>
    where
        F: for<'a> FnOnce(&'a mut Context) -> BoxFuture<'a, tokio_modbus::Result<T>>,
    {
        self.ensure_connected().await?;
        let timeout = self.timeout;
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(LinkError::Backoff(Duration::ZERO));
        };
        let dropped = self.fault.as_ref().is_some_and(|f| f.active());
        let result = if dropped {
            Err(LinkError::Dropped)
        } else {
            match tokio::time::timeout(timeout, op(ctx)).await {
                Err(_) => Err(LinkError::Timeout(timeout)),
                Ok(Err(e)) => Err(LinkError::Transport(e)),
                Ok(Ok(Err(code))) => Err(LinkError::Exception(code)),
                Ok(Ok(Ok(v))) => Ok(v),
            }
        };
        match &result {
            Ok(_) => self.note_success(),
            Err(e) => {
                if e.poisons_connection() {
                    // Never reuse a connection that may deliver a late reply.
                    self.ctx = None;
                }
                self.note_failure(e);
                if self.state == LinkState::Lost {
                    self.ctx = None;
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(Duration::from_millis(self.cfg.backoff_max_ms));
                }
            }
        }
        result
    }

    /// Read `cnt` holding registers from `addr`.
    pub async fn read(&mut self, addr: u16, cnt: u16) -> Result<Vec<u16>, LinkError> {
        let words = self.run(|ctx| ctx.read_holding_registers(addr, cnt)).await?;
        if words.len() != usize::from(cnt) {
            let e = LinkError::ShortReply { addr, asked: cnt, got: words.len() };
            self.ctx = None;
            self.note_failure(&e);
            return Err(e);
        }
        Ok(words)
    }

    /// Write registers without read-back (the caller verifies another way).
    pub async fn write(&mut self, addr: u16, words: &[u16]) -> Result<(), LinkError> {
        let words = words.to_vec();
        self.run(move |ctx| Box::pin(async move { ctx.write_multiple_registers(addr, &words).await })).await
    }

    /// Write registers, then read them back and compare.
    pub async fn write_verified(&mut self, addr: u16, words: &[u16]) -> Result<(), LinkError> {
        self.write(addr, words).await?;
        let read = self.read(addr, words.len() as u16).await?;
        if read != words {
            let e = LinkError::ReadbackMismatch { addr, wrote: words.to_vec(), read };
            self.note_failure(&e);
            return Err(e);
        }
        Ok(())
    }
}
