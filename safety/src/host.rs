//! The island host: runs one island at a time, and its watchdog thread
//! replaces a stalled or dead island without a gap in coverage.
//!
//! A hand-over, when the current island has completed no cycle for
//! `stall_limit` (a new island gets the same grace from its start):
//! 1. the generation is bumped: the old island is fenced. It checks its
//!    generation at the start of every cycle and again right before it
//!    writes, so a stalled island that wakes up writes nothing stale;
//! 2. a new island starts at once (new thread, new connections) from the
//!    latches and heartbeat the old one published after its last complete
//!    cycle: a vent in progress stays open, active alarms are cleared by the
//!    island that took over, the heartbeat keeps counting;
//! 3. `ISLAND_RESTART` is raised, and cleared once the new island has
//!    written its safety words.
//!
//! The old thread is not waited for: it is left to exit at its next fence
//! check. The watchdog runs on its own thread, real-time above the island,
//! so neither the management plane nor a spinning island can delay it.

use crate::config::IslandConfig;
use crate::island::{self, IslandStats, Shared, ISLAND_THREAD};
use crate::priority;
use crate::trip::{code, Detail, Trip, TripSink};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

pub use crate::island::Inputs;

/// Capacity of the alarm queue from the islands to the sink.
const ALARM_QUEUE: usize = 1024;
/// How often the watchdog looks.
const WATCH_PERIOD: Duration = Duration::from_millis(2);

/// Counters of the host, read by the management plane.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Islands started to replace a stalled or dead one.
    pub handovers: AtomicU64,
    /// Microseconds from the old island's last completed cycle to the new
    /// island's first write of the safety words, for the last hand-over.
    pub last_handover_gap_us: AtomicU64,
    /// ... and from the new island's start to its first write.
    pub last_start_to_write_us: AtomicU64,
    /// Islands that could not be started (the OS refused a thread).
    pub start_failures: AtomicU64,
    /// Replaced islands whose threads have not exited yet.
    pub stale_threads: AtomicU64,
}

struct Current {
    generation: u64,
    /// None for an island adopted by a restarted watchdog: judged by its cycles alone.
    handle: Option<JoinHandle<()>>,
    started_us: u64,
}

/// The running safety island with its watchdog. Dropping it stops both.
pub struct IslandHost {
    shared: Arc<Shared>,
    host_stats: Arc<HostStats>,
    /// A hash of the current island's thread id, for tests.
    current_thread: Arc<AtomicU64>,
    watchdog: Option<JoinHandle<()>>,
    alarms: Option<JoinHandle<()>>,
}

/// Install (once) a panic hook that keeps the islands' panics silent: the
/// default hook takes the process's stderr lock and may symbolise a
/// backtrace, which can stall the thread for far longer than a period. The
/// island catches its panics and reports them as `ISLAND_PANIC`. Other
/// threads keep the hook they had.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if thread::current().name() != Some(ISLAND_THREAD) {
                previous(info);
            }
        }));
    });
}

fn deliver_trips(rx: Receiver<Trip>, sink: Arc<dyn TripSink>) {
    for t in rx {
        sink.deliver(&t);
    }
}

impl IslandHost {
    /// Start the alarm thread, the first island and the watchdog. Fails
    /// only if the OS cannot create a thread.
    pub fn start(cfg: IslandConfig, inputs: Arc<dyn Inputs>, sink: Arc<dyn TripSink>) -> std::io::Result<IslandHost> {
        #[cfg(feature = "fault-injection")]
        return Self::start_with_hooks(cfg, inputs, sink, Arc::default());
        #[cfg(not(feature = "fault-injection"))]
        Self::start_inner(cfg, inputs, sink)
    }

    /// As [`IslandHost::start`], with test hooks shared by every island.
    #[cfg(feature = "fault-injection")]
    pub fn start_with_hooks(
        cfg: IslandConfig,
        inputs: Arc<dyn Inputs>,
        sink: Arc<dyn TripSink>,
        hooks: Arc<crate::hooks::IslandHooks>,
    ) -> std::io::Result<IslandHost> {
        Self::start_inner(cfg, inputs, sink, hooks)
    }

    fn start_inner(
        cfg: IslandConfig,
        inputs: Arc<dyn Inputs>,
        sink: Arc<dyn TripSink>,
        #[cfg(feature = "fault-injection")] hooks: Arc<crate::hooks::IslandHooks>,
    ) -> std::io::Result<IslandHost> {
        install_panic_hook();
        let (tx, rx) = sync_channel(ALARM_QUEUE);
        let alarms = thread::Builder::new().name("safety-alarms".into()).spawn(move || deliver_trips(rx, sink))?;
        let shared = Arc::new(Shared {
            cfg,
            inputs,
            stats: Arc::default(),
            generation: AtomicU64::new(1),
            handover: AtomicU64::new(0),
            current_started_us: AtomicU64::new(0),
            trips: tx,
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            #[cfg(feature = "fault-injection")]
            hooks,
        });
        let host_stats = Arc::new(HostStats::default());
        let current_thread = Arc::new(AtomicU64::new(0));
        let first = spawn_island(&shared, 1, &current_thread)?;
        let watch = Watchdog {
            shared: shared.clone(),
            stats: host_stats.clone(),
            current_thread: current_thread.clone(),
            current: first,
            stale: Vec::new(),
        };
        let watchdog = thread::Builder::new().name("safety-watchdog".into()).spawn(move || watch.run())?;
        Ok(IslandHost { shared, host_stats, current_thread, watchdog: Some(watchdog), alarms: Some(alarms) })
    }

    pub fn stats(&self) -> &IslandStats {
        &self.shared.stats
    }

    pub fn host_stats(&self) -> &HostStats {
        &self.host_stats
    }

    /// The generation allowed to write (1 for the first island).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    #[cfg(feature = "fault-injection")]
    pub fn hooks(&self) -> &crate::hooks::IslandHooks {
        &self.shared.hooks
    }

    /// An opaque id of the current island's thread: tells one island from
    /// its successor.
    pub fn island_id(&self) -> u64 {
        self.current_thread.load(Ordering::Acquire)
    }

    /// Time since the current island's last completed cycle.
    pub fn since_last_cycle(&self) -> Duration {
        let last = self.shared.stats.last_cycle_us.load(Ordering::Acquire);
        Duration::from_micros(self.shared.now_us().saturating_sub(last))
    }

    /// When the current island was started.
    pub fn current_started_at(&self) -> Instant {
        self.shared.epoch + Duration::from_micros(self.shared.current_started_us.load(Ordering::Acquire))
    }

    /// The watchdog thread is running.
    pub fn watchdog_alive(&self) -> bool {
        self.watchdog.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Start a new watchdog thread when the old one is gone (it adopts the
    /// running island).
    pub fn restart_watchdog(&mut self) -> std::io::Result<()> {
        if self.watchdog_alive() {
            return Ok(());
        }
        let current = Current {
            generation: self.shared.generation.load(Ordering::Acquire),
            handle: None,
            started_us: self.shared.current_started_us.load(Ordering::Acquire),
        };
        let watch = Watchdog {
            shared: self.shared.clone(),
            stats: self.host_stats.clone(),
            current_thread: self.current_thread.clone(),
            current,
            stale: Vec::new(),
        };
        self.watchdog = Some(thread::Builder::new().name("safety-watchdog".into()).spawn(move || watch.run())?);
        Ok(())
    }

    /// The island's link counters, for reports.
    pub fn links(&self) -> &[Arc<crate::link::LinkCounters>; 4] {
        &self.shared.stats.links
    }

    /// Stop the watchdog and every island (tower shutdown). Waits briefly
    /// for the watchdog; islands exit at their next cycle boundary.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(h) = self.watchdog.take() {
            let _ = h.join();
        }
        // The alarm thread ends when the last island drops its sender.
        self.alarms.take();
    }
}

impl Drop for IslandHost {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            self.stop();
        }
    }
}

fn thread_hash(id: ThreadId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

fn spawn_island(shared: &Arc<Shared>, generation: u64, current_thread: &AtomicU64) -> std::io::Result<Current> {
    let s = shared.clone();
    let handle = thread::Builder::new().name(ISLAND_THREAD.into()).spawn(move || island::run(s, generation))?;
    current_thread.store(thread_hash(handle.thread().id()), Ordering::Release);
    let started_us = shared.now_us();
    shared.current_started_us.store(started_us, Ordering::Release);
    Ok(Current { generation, handle: Some(handle), started_us })
}

struct Watchdog {
    shared: Arc<Shared>,
    stats: Arc<HostStats>,
    current_thread: Arc<AtomicU64>,
    current: Current,
    stale: Vec<JoinHandle<()>>,
}

impl Watchdog {
    fn run(mut self) {
        if self.shared.cfg.realtime_priority {
            priority::make_realtime(priority::WATCHDOG_PRIORITY);
        }
        let limit = self.shared.cfg.stall_limit.max(self.shared.cfg.period * 2).as_micros() as u64;
        // A raised ISLAND_RESTART, cleared once the new island has written.
        let mut restart_alarm: Option<u64> = None;
        let mut next = Instant::now();
        while !self.shared.stopping.load(Ordering::Acquire) {
            let now_us = self.shared.now_us();
            let last = self.shared.stats.last_cycle_us.load(Ordering::Acquire).max(self.current.started_us);
            let dead = self.current.handle.as_ref().is_some_and(|h| h.is_finished());
            if dead || now_us.saturating_sub(last) > limit {
                let stalled_ms = now_us.saturating_sub(last) / 1000;
                if self.hand_over(stalled_ms) {
                    restart_alarm = Some(last);
                }
            }
            if let Some(old_last) = restart_alarm {
                let written = self.shared.stats.last_write_us.load(Ordering::Acquire);
                if written > self.current.started_us {
                    self.stats.last_start_to_write_us.store(written.saturating_sub(self.current.started_us), Ordering::Release);
                    self.stats.last_handover_gap_us.store(written.saturating_sub(old_last), Ordering::Release);
                    let _ = self.shared.trips.try_send(Trip::clear(code::ISLAND_RESTART, Detail::Handover { stalled_ms: 0 }));
                    restart_alarm = None;
                }
            }
            self.stale.retain(|h| !h.is_finished());
            self.stats.stale_threads.store(self.stale.len() as u64, Ordering::Relaxed);
            next += WATCH_PERIOD;
            let now = Instant::now();
            if next <= now {
                next = now + WATCH_PERIOD;
            } else {
                thread::sleep(next - now);
            }
        }
    }

    /// Fence the current island and start its successor. False if the OS
    /// refused a thread (tried again next period).
    fn hand_over(&mut self, stalled_ms: u64) -> bool {
        let generation = self.current.generation + 1;
        self.shared.generation.store(generation, Ordering::Release);
        match spawn_island(&self.shared, generation, &self.current_thread) {
            Ok(next) => {
                let old = std::mem::replace(&mut self.current, next);
                self.stale.extend(old.handle);
                self.stats.handovers.fetch_add(1, Ordering::Relaxed);
                let _ = self.shared.trips.try_send(Trip::raise(code::ISLAND_RESTART, Detail::Handover { stalled_ms }));
                true
            }
            Err(_) => {
                self.stats.start_failures.fetch_add(1, Ordering::Relaxed);
                // Stay on this generation number; the next try uses it again.
                self.current.generation = generation;
                false
            }
        }
    }
}
