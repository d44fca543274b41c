//! The PACS actor: forwards the outbox to the PACS by C-STORE, oldest still
//! first, on one association per batch.
//!
//! - While the PACS cannot be reached (refused, timed out, aborted, out of
//!   resources) the stills stay in the outbox, `PACS_UNREACHABLE` is raised
//!   with how many wait, and the next try waits a backoff that doubles up
//!   to `retry_max_ms`. The alarm clears when the outbox is empty again.
//! - A still the PACS refuses for good moves aside and raises
//!   `PACS_REFUSED` naming it and the status.
//! - The DICOM exchange is blocking, so it runs on a blocking thread; its
//!   socket timeouts bound how long a stalled PACS can hold it, and the
//!   actor's hang timeout is set above them.

use super::dimse::{Association, DicomPeer, DimseError, StoreStatus};
use super::outbox::Outbox;
use super::still::VL_ENDOSCOPIC_IMAGE;
use crate::events::{EventBus, EventKind, Severity};
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `[pacs]`: where stills go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacsConfig {
    /// The PACS (its storage SCP).
    pub peer: DicomPeer,
    /// The store-and-forward queue's directory.
    pub outbox: String,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Stills sent per association.
    pub batch: usize,
}

impl PacsConfig {
    pub fn validate(&self, path: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::{check_int, ConfigError};
        self.peer.validate(&format!("{path}.peer"))?;
        if self.outbox.is_empty() {
            return Err(ConfigError::new(format!("{path}.outbox"), "\"\"", "a directory path"));
        }
        check_int(&format!("{path}.retry_initial_ms"), self.retry_initial_ms, 10, 60_000, "ms")?;
        check_int(&format!("{path}.retry_max_ms"), self.retry_max_ms, self.retry_initial_ms, 600_000, "ms")?;
        check_int(&format!("{path}.batch"), self.batch as u64, 1, 1000, "stills")
    }
}

pub struct PacsArgs {
    pub cfg: PacsConfig,
    pub events: EventBus,
    pub liveness: Liveness,
}

pub enum PacsMsg {
    Tick,
}

pub struct PacsState {
    cfg: PacsConfig,
    outbox: Outbox,
    events: EventBus,
    liveness: Liveness,
    retry_at: Option<Instant>,
    delay: Duration,
}

/// What one batch did.
#[derive(Debug, Default)]
struct Batch {
    sent: usize,
    refused: Vec<(PathBuf, u16)>,
    /// Why the batch stopped early (the PACS unreachable or busy).
    stopped: Option<String>,
}

/// Send up to `max` queued stills on one association.
fn send_batch(peer: &DicomPeer, outbox: &Outbox, files: Vec<PathBuf>, liveness: &Liveness) -> Batch {
    let mut b = Batch::default();
    let mut assoc = match Association::open(peer, VL_ENDOSCOPIC_IMAGE) {
        Ok(a) => a,
        Err(e) => {
            b.stopped = Some(e.to_string());
            return b;
        }
    };
    for path in files {
        // Each still is bounded by the socket timeouts: alive between them.
        liveness.beat();
        let file = match dicom_object::open_file(&path) {
            Ok(f) => f,
            Err(e) => {
                // Unreadable (should not happen: written atomically): aside.
                b.refused.push((path.clone(), 0));
                tracing::error!(file = %path.display(), error = %e, "outbox file unreadable");
                let _ = outbox.refuse(&path);
                continue;
            }
        };
        match assoc.store(&file) {
            Ok(StoreStatus::Stored(_)) => match outbox.sent(&path) {
                Ok(()) => b.sent += 1,
                Err(e) => {
                    b.stopped = Some(e.to_string());
                    break;
                }
            },
            Ok(StoreStatus::Refused(status)) => {
                b.refused.push((path.clone(), status));
                if let Err(e) = outbox.refuse(&path) {
                    b.stopped = Some(e.to_string());
                    break;
                }
            }
            Ok(StoreStatus::Retry(status)) => {
                b.stopped = Some(format!("{}: busy (status {status:04X}H)", peer.name()));
                break;
            }
            Err(
                e @ (DimseError::Network { .. }
                | DimseError::Protocol { .. }
                | DimseError::Associate { .. }
                | DimseError::NotAccepted { .. }),
            ) => {
                b.stopped = Some(e.to_string());
                return b; // the association is gone: dropped (aborted)
            }
        }
    }
    assoc.release();
    b
}

pub struct PacsActor;

impl PacsState {
    async fn forward(&mut self) -> Result<(), ActorProcessingErr> {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let pending = match self.outbox.pending() {
            Ok(p) => p,
            Err(e) => {
                self.events.raise("pacs", "PACS_UNREACHABLE", Severity::Medium, format!("cannot read the outbox: {e}"));
                return Ok(());
            }
        };
        if pending.is_empty() {
            self.events.clear("pacs", "PACS_UNREACHABLE", "every still is in the PACS");
            return Ok(());
        }
        let waiting = pending.len();
        let files: Vec<PathBuf> = pending.into_iter().take(self.cfg.batch).collect();
        let (peer, outbox, liveness) = (self.cfg.peer.clone(), self.outbox.clone(), self.liveness.clone());
        let batch = tokio::task::spawn_blocking(move || send_batch(&peer, &outbox, files, &liveness)).await?;
        self.liveness.beat();
        if batch.sent > 0 {
            self.events.event(
                EventKind::Capture,
                Severity::Info,
                "pacs",
                "STILLS_SENT",
                format!("{} still(s) stored in {}", batch.sent, self.cfg.peer.name()),
            );
        }
        for (path, status) in &batch.refused {
            self.events.raise(
                "pacs",
                "PACS_REFUSED",
                Severity::Medium,
                format!(
                    "{} refused {} (status {status:04X}H); kept in {}",
                    self.cfg.peer.name(),
                    path.display(),
                    self.outbox.dir().join("refused").display()
                ),
            );
        }
        match batch.stopped {
            Some(why) => {
                let left = waiting - batch.sent - batch.refused.len();
                self.events.raise(
                    "pacs",
                    "PACS_UNREACHABLE",
                    Severity::Medium,
                    format!(
                        "PACS unreachable: {why}; {left} still(s) kept in {}, retry in {} ms",
                        self.outbox.dir().display(),
                        self.delay.as_millis()
                    ),
                );
                self.retry_at = Some(Instant::now() + self.delay);
                self.delay = (self.delay * 2).min(Duration::from_millis(self.cfg.retry_max_ms));
            }
            None => {
                self.retry_at = None;
                self.delay = Duration::from_millis(self.cfg.retry_initial_ms);
            }
        }
        Ok(())
    }
}

impl Actor for PacsActor {
    type Msg = PacsMsg;
    type State = PacsState;
    type Arguments = PacsArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, a: PacsArgs) -> Result<Self::State, ActorProcessingErr> {
        a.liveness.beat();
        let outbox = Outbox::open(std::path::Path::new(&a.cfg.outbox))?;
        myself.send_interval(Duration::from_millis(200), || PacsMsg::Tick);
        let delay = Duration::from_millis(a.cfg.retry_initial_ms);
        Ok(PacsState { cfg: a.cfg, outbox, events: a.events, liveness: a.liveness, retry_at: None, delay })
    }

    async fn handle(&self, _m: ActorRef<Self::Msg>, msg: Self::Msg, s: &mut Self::State) -> Result<(), ActorProcessingErr> {
        s.liveness.beat();
        match msg {
            PacsMsg::Tick => s.forward().await,
        }
    }
}
