//! The device actor: one per device, generic over its control law.
//!
//! Each poll (at the configured rate, on absolute deadlines, never queued up):
//! read the sensor and control block in one request, run the control law, and
//! write the control block only when the device's read-back differs from what
//! the law wants, verifying the write by reading it back. The link state
//! machine lives in [`crate::link`]; the status goes to a `watch` channel that
//! survives restarts.

use crate::config::LinkConfig;
use crate::device_status::LinkStatus;
use crate::events::{EventBus, Severity};
use crate::link::{LinkState, ModbusLink};
use crate::registers;
use crate::setpoints::Setpoints;
use crate::supervisor::Liveness;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a control law sees besides its own registers.
pub struct ControlCtx<'a> {
    pub setpoints: &'a Setpoints,
    pub events: &'a EventBus,
    pub dt: Duration,
}

/// A device's control law, free of I/O so it can be unit-tested.
pub trait DeviceControl: Send + Sync + 'static {
    /// Block read each poll: from address 0, this many words (sensors and the
    /// control block, so outputs are read back every poll).
    const READ_LEN: u16;
    /// Control block start address.
    const CONTROL_ADDR: u16;
    /// Control block length: `update` returns exactly this many words.
    const CONTROL_LEN: u16;
    /// Checked at compile time for every law a device actor is built with:
    /// the control block stays below the safety registers, which only the
    /// island writes.
    const CONTROL_BELOW_SAFETY: () = assert!(
        Self::CONTROL_ADDR + Self::CONTROL_LEN <= registers::SAFETY_BASE,
        "a control law's writes must stay below the safety registers (24..31)"
    );
    /// What it publishes (on its status watch).
    type Status: LinkStatus;

    /// Run the law on a fresh read; return the control words wanted (written
    /// at `CONTROL_ADDR` if they differ from the read-back), or `None` to
    /// leave the outputs alone.
    fn update(&mut self, words: &[u16], ctx: &mut ControlCtx<'_>) -> Option<Vec<u16>>;

    /// The link could not be read this poll (`state` says how bad it is).
    fn on_link_down(&mut self, state: LinkState, ctx: &mut ControlCtx<'_>);

    /// The status as the law last computed it.
    fn status(&self) -> &Self::Status;

    /// Where the status goes.
    fn channel(&self) -> &watch::Sender<Self::Status>;
}

/// The status accessors of a control law that keeps its status in
/// `self.status` and its watch sender in `self.tx`.
#[macro_export]
macro_rules! status_on_watch {
    ($status:ty) => {
        type Status = $status;

        fn status(&self) -> &$status {
            &self.status
        }

        fn channel(&self) -> &tokio::sync::watch::Sender<$status> {
            &self.tx
        }
    };
}

/// Run-time test hooks (used by the failure-injection tests and scenarios).
#[derive(Debug)]
pub enum DeviceMsg {
    Poll,
    /// Panic in the handler, as a bug would.
    TestPanic,
    /// Stop processing messages for this long, as a deadlock would.
    TestHang(Duration),
}

pub struct DeviceArgs<C> {
    pub name: String,
    pub link: LinkConfig,
    pub poll_hz: f64,
    pub control: C,
    pub setpoints: Setpoints,
    pub events: EventBus,
    pub liveness: Liveness,
    /// Test hook: the control link's drop switch.
    pub link_fault: Option<crate::fault_injection::LinkFault>,
}

pub struct DeviceState<C> {
    name: String,
    link: ModbusLink,
    period: Duration,
    next_due: Instant,
    last_poll: Instant,
    control: C,
    setpoints: Setpoints,
    events: EventBus,
    liveness: Liveness,
    polls: u64,
    /// Link state at the last poll (LINK_LOST alarm edges).
    last_link: LinkState,
}

pub struct DeviceActor<C>(std::marker::PhantomData<fn() -> C>);

impl<C> Default for DeviceActor<C> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<C: DeviceControl> DeviceState<C> {
    async fn poll(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_poll);
        self.last_poll = now;
        let mut ctx = ControlCtx { setpoints: &self.setpoints, events: &self.events, dt };
        match self.link.read(0, C::READ_LEN).await {
            Ok(words) => {
                self.polls += 1;
                if let Some(want) = self.control.update(&words, &mut ctx).filter(|w| {
                    let fits = w.len() == usize::from(C::CONTROL_LEN);
                    if !fits {
                        tracing::error!(device = %self.name, words = w.len(), expected = C::CONTROL_LEN, "control law returned a block of the wrong size: not written");
                    }
                    fits
                }) {
                    let start = usize::from(C::CONTROL_ADDR);
                    let have = words.get(start..start + want.len());
                    if have != Some(want.as_slice()) {
                        if let Err(e) = self.link.write_verified(C::CONTROL_ADDR, &want).await {
                            tracing::warn!(device = %self.name, error = %e, "control write failed");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(device = %self.name, error = %e, "poll failed");
                self.control.on_link_down(self.link.state(), &mut ctx);
            }
        }
        let link = self.link.state();
        let mut status = self.control.status().clone();
        status.set_link(link, self.polls);
        self.control.channel().send_replace(status);
        // The operator sees a lost device link: raised on entering Lost,
        // cleared on reaching Connected again.
        if link != self.last_link {
            self.last_link = link;
            match link {
                LinkState::Lost => {
                    self.events.raise(&self.name, "LINK_LOST", Severity::Medium, format!("{}: Modbus link lost; reconnecting", self.name));
                }
                LinkState::Connected => {
                    self.events.clear(&self.name, "LINK_LOST", format!("{}: Modbus link back", self.name));
                }
                LinkState::Connecting | LinkState::Degraded => {}
            }
        }
    }
}

impl<C: DeviceControl> Actor for DeviceActor<C> {
    type Msg = DeviceMsg;
    type State = DeviceState<C>;
    type Arguments = DeviceArgs<C>;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, a: DeviceArgs<C>) -> Result<Self::State, ActorProcessingErr> {
        #[allow(clippy::let_unit_value)]
        let () = C::CONTROL_BELOW_SAFETY;
        let period = Duration::from_secs_f64(1.0 / a.poll_hz.max(0.01));
        let now = Instant::now();
        a.liveness.beat();
        Ok(DeviceState {
            link: match a.link_fault {
                Some(f) => ModbusLink::new(a.name.clone(), a.link).with_fault(f),
                None => ModbusLink::new(a.name.clone(), a.link),
            },
            name: a.name,
            period,
            next_due: now,
            last_poll: now,
            control: a.control,
            setpoints: a.setpoints,
            events: a.events,
            liveness: a.liveness,
            polls: 0,
            last_link: LinkState::Connecting,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        tracing::info!(device = %state.name, period_ms = state.period.as_secs_f64() * 1e3, "device actor started");
        myself.cast(DeviceMsg::Poll)?;
        Ok(())
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, msg: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            DeviceMsg::Poll => {
                state.liveness.beat();
                state.poll().await;
                state.liveness.beat();
                // Absolute schedule; if we fell behind, skip rather than burst.
                let now = Instant::now();
                state.next_due += state.period;
                if state.next_due < now {
                    state.next_due = now;
                }
                myself.send_after(state.next_due - now, || DeviceMsg::Poll);
            }
            DeviceMsg::TestPanic => panic!("{}: test hook panic", state.name),
            DeviceMsg::TestHang(d) => {
                tracing::warn!(device = %state.name, ms = d.as_millis() as u64, "test hook: hanging");
                tokio::time::sleep(d).await;
            }
        }
        Ok(())
    }
}
