//! One safety island: the read -> update -> write loop on its own OS thread,
//! with its own current-thread tokio runtime and its own connections, on
//! absolute-deadline periods.
//!
//! Each period:
//! 1. read the insufflator and light sensor blocks (concurrently, unless they
//!    share a serial line);
//! 2. judge freshness (SAMPLE_SEQ moved, value valid and in span) and run
//!    the interlocks of [`crate::interlocks`];
//! 3. check the fence (the island's generation is still the current one),
//!    then write SAFETY_CMD / SAFETY_CAP with the heartbeat, so a trip
//!    reaches the device within the same period; camera and pedal get their
//!    heartbeat every `aux_heartbeat`;
//! 4. publish the latches and heartbeat for a possible successor, and the
//!    trips to the alarm queue (`try_send`, never blocking).
//!
//! Nothing in the cycle logs, formats text or takes a lock shared with
//! another thread: inputs are atomics ([`Inputs`]), outputs are atomics and
//! a bounded queue. A stalled island that wakes up finds its generation
//! fenced and exits before writing anything.

use crate::config::{DeviceLink, IslandConfig, Transport};
use crate::interlocks::{self, Latched, LightReading, PressureChannels, PressureLow, TemperatureStuck};
use crate::link::{IslandLink, LinkCounters, LinkError};
use crate::modbus::Request;
use crate::registers::{self, camera, insufflator as ins, light, pedal};
use crate::trip::{code, Detail, Device, Trip, TripBuf};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the island reads from the management plane: lock-free loads only.
pub trait Inputs: Send + Sync + 'static {
    /// P1, the set pressure in force.
    fn p1_mmhg(&self) -> f64;
    /// The tower's safe-state latch.
    fn safe_state(&self) -> bool;
}

/// Counters every island of a host updates, read by the management plane.
#[derive(Debug, Default)]
pub struct IslandStats {
    pub cycles: AtomicU64,
    pub overruns: AtomicU64,
    pub max_cycle_us: AtomicU64,
    pub caught_panics: AtomicU64,
    /// Microseconds since the host started, at the end of the last cycle.
    pub last_cycle_us: AtomicU64,
    /// ... and at the end of the last write of the safety words.
    pub last_write_us: AtomicU64,
    pub insufflator_cmd: AtomicU16,
    pub light_cap: AtomicU16,
    /// Alarm edges raised.
    pub trips: AtomicU64,
    /// Alarm edges dropped because the alarm queue stayed full.
    pub dropped_trips: AtomicU64,
    /// Cycles a fenced (replaced) island began and abandoned before writing.
    pub fenced_exits: AtomicU64,
    /// Link counters: insufflator, light, camera, pedal (one per device; on
    /// a shared serial line the devices share the line's counters).
    pub links: [Arc<LinkCounters>; 4],
}

/// What outlives one island: the fence, the hand-over cell, the alarm
/// queue, the clock and the hooks.
pub(crate) struct Shared {
    pub(crate) cfg: IslandConfig,
    pub(crate) inputs: Arc<dyn Inputs>,
    pub(crate) stats: Arc<IslandStats>,
    /// The generation allowed to write. An island whose generation differs
    /// is fenced: it writes nothing more and exits.
    pub(crate) generation: AtomicU64,
    /// Latches (high 32 bits) and last heartbeat (low 16 bits) of the last
    /// completed cycle, for the next island.
    pub(crate) handover: AtomicU64,
    /// When the current island was started (µs since `epoch`).
    pub(crate) current_started_us: AtomicU64,
    pub(crate) trips: SyncSender<Trip>,
    pub(crate) epoch: Instant,
    pub(crate) stopping: AtomicBool,
    #[cfg(feature = "fault-injection")]
    pub(crate) hooks: Arc<crate::hooks::IslandHooks>,
}

impl Shared {
    pub(crate) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Per-device freshness: a reading counts only when SAMPLE_SEQ moved.
#[derive(Debug, Default)]
struct Freshness {
    last_seq: Option<u16>,
    last_fresh: Option<Instant>,
}

impl Freshness {
    /// True when this sample is new.
    fn observe(&mut self, now: Instant, seq: u16) -> bool {
        let moved = self.last_seq != Some(seq);
        self.last_seq = Some(seq);
        if moved {
            self.last_fresh = Some(now);
        }
        moved
    }
    fn fresh(&self, now: Instant, stale: Duration) -> bool {
        self.last_fresh.is_some_and(|t| now.duration_since(t) <= stale)
    }
}

/// A device's place: which connection, which unit.
#[derive(Debug, Clone, Copy)]
struct Slot {
    bus: usize,
    unit: u8,
}

const INS: usize = 0;
const LIGHT: usize = 1;
const CAMERA: usize = 2;
const PEDAL: usize = 3;

/// The connections, one per TCP device or serial line, and each device's slot.
struct Buses {
    links: Vec<IslandLink>,
    slots: [Slot; 4],
}

impl Buses {
    fn new(cfg: &IslandConfig, counters: &[Arc<LinkCounters>; 4]) -> Buses {
        let devices: [&DeviceLink; 4] = [&cfg.insufflator, &cfg.light, &cfg.camera, &cfg.pedal];
        let mut links: Vec<IslandLink> = Vec::with_capacity(4);
        let mut paths: Vec<(String, usize)> = Vec::new();
        let mut slots = [Slot { bus: 0, unit: 0 }; 4];
        for (i, d) in devices.iter().enumerate() {
            let bus = match &d.transport {
                Transport::Rtu { path, .. } => match paths.iter().find(|(p, _)| p == path) {
                    Some((_, b)) => *b,
                    None => {
                        paths.push((path.clone(), links.len()));
                        links.push(IslandLink::new(d.transport.clone(), d.timing, counters[i].clone()));
                        links.len() - 1
                    }
                },
                Transport::Tcp(_) => {
                    links.push(IslandLink::new(d.transport.clone(), d.timing, counters[i].clone()));
                    links.len() - 1
                }
            };
            slots[i] = Slot { bus, unit: d.unit };
        }
        Buses { links, slots }
    }

    /// Two requests to two devices: concurrent on two connections, one after
    /// the other on a shared serial line (never two frames at once).
    async fn two(
        &mut self,
        (d1, r1, regs1): (usize, Request<'_>, &mut [u16]),
        (d2, r2, regs2): (usize, Request<'_>, &mut [u16]),
    ) -> (Result<(), LinkError>, Result<(), LinkError>) {
        let (s1, s2) = (self.slots[d1], self.slots[d2]);
        if s1.bus == s2.bus {
            let a = self.links[s1.bus].request(s1.unit, r1, regs1).await;
            let b = self.links[s2.bus].request(s2.unit, r2, regs2).await;
            return (a, b);
        }
        let (lo, hi) = (s1.bus.min(s2.bus), s1.bus.max(s2.bus));
        let (left, right) = self.links.split_at_mut(hi);
        let (l_lo, l_hi) = (&mut left[lo], &mut right[0]);
        let (first, second) = if s1.bus < s2.bus { (l_lo, l_hi) } else { (l_hi, l_lo) };
        tokio::join!(first.request(s1.unit, r1, regs1), second.request(s2.unit, r2, regs2))
    }

    fn reset(&mut self) {
        for l in &mut self.links {
            l.reset();
        }
    }
}

/// Why a cycle ended the island.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CycleEnd {
    Continue,
    Fenced,
}

pub(crate) struct Island {
    shared: Arc<Shared>,
    generation: u64,
    buses: Buses,
    ins_fresh: Freshness,
    light_fresh: Freshness,
    pressure: (Option<f64>, Option<f64>),
    temps: Option<(f64, f64, f64)>,
    channels: PressureChannels,
    pressure_low: PressureLow,
    led_stuck: TemperatureStuck,
    tip_stuck: TemperatureStuck,
    latched: Latched,
    heartbeat: u16,
    /// What was written last period (for the read-back), per device.
    written: [Option<u16>; 2],
    last_aux: Option<Instant>,
    trips: TripBuf,
    backlog: TripBuf,
    #[cfg(feature = "fault-injection")]
    drop_until: [Option<Instant>; 2],
}

fn in_span(v: f64, span: [f64; 2]) -> bool {
    v >= span[0] && v <= span[1]
}

impl Island {
    /// A new island of `generation`, starting from the last published latches.
    pub(crate) fn new(shared: Arc<Shared>, generation: u64) -> Island {
        let handed = shared.handover.load(Ordering::Acquire);
        let buses = Buses::new(&shared.cfg, &shared.stats.links);
        Island {
            latched: Latched::from_bits((handed >> 32) as u32),
            heartbeat: (handed & 0xFFFF) as u16,
            shared,
            generation,
            buses,
            ins_fresh: Freshness::default(),
            light_fresh: Freshness::default(),
            pressure: (None, None),
            temps: None,
            channels: PressureChannels::default(),
            pressure_low: PressureLow::default(),
            led_stuck: TemperatureStuck::default(),
            tip_stuck: TemperatureStuck::default(),
            written: [None; 2],
            last_aux: None,
            trips: TripBuf::default(),
            backlog: TripBuf::default(),
            #[cfg(feature = "fault-injection")]
            drop_until: [None; 2],
        }
    }

    fn fenced(&self) -> bool {
        self.shared.generation.load(Ordering::Acquire) != self.generation
    }

    /// HZ-010: the device must read back the safety word written last
    /// period. Raised when a device starts to differ, cleared when neither
    /// does. After a failed write nothing is known, and nothing changes.
    fn check_echo(&mut self, device: Device, echo: u16) {
        let i = match device {
            Device::Insufflator => 0,
            Device::Light => 1,
        };
        let Some(wrote) = self.written[i] else { return };
        let l = &mut self.latched;
        let was_active = l.echo_insufflator || l.echo_light;
        let flag = if i == 0 { &mut l.echo_insufflator } else { &mut l.echo_light };
        let bad = wrote != echo;
        let changed = *flag != bad;
        *flag = bad;
        let now_active = l.echo_insufflator || l.echo_light;
        let detail = Detail::Echo { device, wrote, read: echo };
        if bad && changed {
            self.trips.push(Trip::raise(code::SAFETY_WORD_NOT_APPLIED, detail));
        } else if was_active && !now_active {
            self.trips.push(Trip::clear(code::SAFETY_WORD_NOT_APPLIED, detail));
        }
    }

    #[cfg(feature = "fault-injection")]
    fn hooks_before_cycle(&mut self, now: Instant) {
        let h = &self.shared.hooks;
        if h.panic_next_cycle.swap(false, Ordering::AcqRel) {
            panic!("safety island test hook: injected panic");
        }
        let stall = h.stall_next_cycle_ms.swap(0, Ordering::AcqRel);
        if stall > 0 {
            std::thread::sleep(Duration::from_millis(stall));
        }
        for (i, slot) in h.drop_link_ms.iter().enumerate() {
            let ms = slot.swap(0, Ordering::AcqRel);
            if ms > 0 {
                self.drop_until[i] = Some(now + Duration::from_millis(ms));
            }
        }
    }

    #[cfg(feature = "fault-injection")]
    fn link_dropped(&self, dev: usize, now: Instant) -> bool {
        self.drop_until[dev].is_some_and(|t| now < t)
    }

    #[cfg(not(feature = "fault-injection"))]
    fn link_dropped(&self, _dev: usize, _now: Instant) -> bool {
        false
    }

    /// One period. Returns `Fenced` when a successor has taken over.
    pub(crate) async fn cycle(&mut self) -> CycleEnd {
        if self.fenced() {
            return CycleEnd::Fenced;
        }
        #[cfg(feature = "fault-injection")]
        self.hooks_before_cycle(Instant::now());
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        let (mut iw, mut lw) = ([0u16; ins::SENSOR_LEN as usize], [0u16; light::SENSOR_LEN as usize]);
        let (ir, lr) = self
            .buses
            .two(
                (INS, Request::Read { addr: 0, qty: ins::SENSOR_LEN }, &mut iw),
                (LIGHT, Request::Read { addr: 0, qty: light::SENSOR_LEN }, &mut lw),
            )
            .await;
        let now = Instant::now();
        self.trips.clear();
        let stale = cfg.stale;
        if ir.is_ok() && !self.link_dropped(INS, now) {
            let span = cfg.pressure_span_mmhg;
            let decode = |addr: u16| registers::decode_signed(iw[addr as usize], 0.01).filter(|p| in_span(*p, span));
            if self.ins_fresh.observe(now, iw[ins::SAMPLE_SEQ as usize]) {
                self.pressure = (decode(ins::PRESSURE), decode(ins::PRESSURE_2));
            }
            self.check_echo(Device::Insufflator, iw[ins::SAFETY_ECHO as usize]);
        }
        if lr.is_ok() && !self.link_dropped(LIGHT, now) {
            let span = cfg.temperature_span_c;
            let t = |addr: u16| registers::decode_signed(lw[addr as usize], 0.1).filter(|c| in_span(*c, span));
            if self.light_fresh.observe(now, lw[light::SAMPLE_SEQ as usize]) {
                let drive = f64::from(lw[light::DRIVE_APPLIED as usize]) / 10.0;
                self.temps = t(light::LED_TEMP).zip(t(light::TIP_TEMP)).map(|(led, tip)| (led, tip, drive));
            }
            self.check_echo(Device::Light, lw[light::SAFETY_ECHO as usize]);
        }
        let (a, b) = if self.ins_fresh.fresh(now, stale) { self.pressure } else { (None, None) };
        let p1 = self.shared.inputs.p1_mmhg();
        let safe_state = self.shared.inputs.safe_state();
        let view = self.channels.update(now, a, b, cfg, &mut self.latched, &mut self.trips);
        #[allow(unused_mut)] // reassigned only by the fault-injection hook
        let mut cmd = interlocks::insufflation(view, p1, cfg, safe_state, &mut self.latched, &mut self.trips);
        self.pressure_low.update(now, view.pressure, p1, cfg, &mut self.latched, &mut self.trips);
        let reading = match (self.temps, self.light_fresh.fresh(now, stale)) {
            (Some((led, tip, drive)), true) => Some(LightReading {
                led_c: led,
                tip_c: tip,
                led_stuck: self.led_stuck.update(now, led, drive, cfg),
                tip_stuck: self.tip_stuck.update(now, tip, drive, cfg),
            }),
            _ => None,
        };
        #[allow(unused_mut)]
        let mut cap = interlocks::light(reading, cfg, safe_state, &mut self.latched, &mut self.trips);
        #[cfg(feature = "fault-injection")]
        if self.shared.hooks.interlocks_disabled.load(Ordering::Relaxed) {
            (cmd, cap) = (0, 100);
            self.trips.clear();
        }
        // The fence, right before the write: a successor may have started
        // while this island was stalled anywhere above.
        if self.fenced() {
            self.shared.stats.fenced_exits.fetch_add(1, Ordering::Relaxed);
            return CycleEnd::Fenced;
        }
        self.heartbeat = self.heartbeat.wrapping_add(1);
        let hb = self.heartbeat;
        let (iw2, lw2) = ([cmd, hb], [cap, hb]);
        let (wi, wl) = self
            .buses
            .two(
                (INS, Request::Write { addr: ins::SAFETY_CMD, values: &iw2 }, &mut []),
                (LIGHT, Request::Write { addr: light::SAFETY_CAP, values: &lw2 }, &mut []),
            )
            .await;
        self.written = [wi.is_ok().then_some(cmd), wl.is_ok().then_some(cap)];
        let stats = &self.shared.stats;
        stats.insufflator_cmd.store(cmd, Ordering::Relaxed);
        stats.light_cap.store(cap, Ordering::Relaxed);
        if wi.is_ok() || wl.is_ok() {
            stats.last_write_us.store(self.shared.now_us(), Ordering::Release);
        }
        if self.last_aux.is_none_or(|t| now.duration_since(t) >= cfg.aux_heartbeat) {
            self.last_aux = Some(now);
            let hb_words = [hb];
            let _ = self
                .buses
                .two(
                    (CAMERA, Request::Write { addr: camera::HEARTBEAT, values: &hb_words }, &mut []),
                    (PEDAL, Request::Write { addr: pedal::HEARTBEAT, values: &hb_words }, &mut []),
                )
                .await;
        }
        self.publish();
        CycleEnd::Continue
    }

    /// Hand the latches on, then the trips (backlog first, in order).
    fn publish(&mut self) {
        let word = (u64::from(self.latched.to_bits()) << 32) | u64::from(self.heartbeat);
        self.shared.handover.store(word, Ordering::Release);
        let stats = &self.shared.stats;
        stats.trips.fetch_add(self.trips.iter().filter(|t| t.active).count() as u64, Ordering::Relaxed);
        for t in self.trips.iter() {
            self.backlog.push(*t);
        }
        stats.dropped_trips.fetch_add(std::mem::take(&mut self.backlog.dropped), Ordering::Relaxed);
        while let Some(t) = self.backlog.pop_front() {
            match self.shared.trips.try_send(t) {
                Ok(()) => {}
                Err(TrySendError::Full(t)) => {
                    // Keep it for the next period; never block here.
                    let mut rest = TripBuf::default();
                    rest.push(t);
                    while let Some(x) = self.backlog.pop_front() {
                        rest.push(x);
                    }
                    self.backlog = rest;
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
    }

    /// After a caught panic a request may still be in flight on a
    /// connection: drop them all so no late reply is taken as fresh.
    fn reset_links(&mut self) {
        self.buses.reset();
    }
}

/// Thread name of every island.
pub const ISLAND_THREAD: &str = "safety-island";

/// The island thread's body: cycles on absolute deadlines until fenced.
pub(crate) fn run(shared: Arc<Shared>, generation: u64) {
    let build = || tokio::runtime::Builder::new_current_thread().enable_all().build();
    let Ok(mut rt) = build() else {
        return; // the watchdog sees no cycle and hands over again
    };
    if shared.cfg.realtime_priority {
        crate::priority::make_realtime(crate::priority::SAFETY_PRIORITY);
    }
    let period = shared.cfg.period;
    let mut island = Island::new(shared.clone(), generation);
    let stats = shared.stats.clone();
    let mut next = Instant::now();
    loop {
        let t0 = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(island.cycle()))) {
            Ok(CycleEnd::Continue) => {}
            Ok(CycleEnd::Fenced) => return,
            Err(payload) => {
                stats.caught_panics.fetch_add(1, Ordering::Relaxed);
                let message = payload.downcast_ref::<&'static str>().copied().unwrap_or("(message not static)");
                island.trips.clear();
                island.trips.push(Trip::raise(code::ISLAND_PANIC, Detail::Panic { message }));
                island.publish();
                // Requests may be in flight and the runtime's state is unknown: start both afresh.
                island.reset_links();
                if let Ok(new_rt) = build() {
                    std::mem::replace(&mut rt, new_rt).shutdown_background();
                }
            }
        }
        let end = Instant::now();
        let took = end.duration_since(t0).as_micros() as u64;
        stats.max_cycle_us.fetch_max(took, Ordering::Relaxed);
        stats.cycles.fetch_add(1, Ordering::Relaxed);
        stats.last_cycle_us.store(shared.now_us(), Ordering::Release);
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        next += period;
        if next <= end {
            stats.overruns.fetch_add(1, Ordering::Relaxed);
            next = end + period; // re-phase rather than burst
        } else {
            std::thread::sleep(next - end);
        }
    }
}
