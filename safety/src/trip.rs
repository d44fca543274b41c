//! What the island reports: an alarm raised or cleared ([`Trip`]), carried
//! as plain values through a bounded queue and turned into text only on the
//! alarm thread, off the cycle. The tower receives them through a
//! [`TripSink`] (its event bus); the island never waits on it.

/// Alarm codes the island raises. Hazard ids refer to HAZARDS.md.
pub mod code {
    pub const OVER_PRESSURE_VENT: &str = "HZ-001";
    pub const OVER_PRESSURE_INHIBIT: &str = "HZ-002";
    pub const NO_PRESSURE: &str = "HZ-003";
    pub const LED_OVER_TEMPERATURE: &str = "HZ-004";
    pub const TIP_OVER_TEMPERATURE: &str = "HZ-005";
    pub const NO_TEMPERATURE: &str = "HZ-006";
    pub const SAFE_STATE: &str = "HZ-008";
    pub const SAFETY_WORD_NOT_APPLIED: &str = "HZ-010";
    pub const PRESSURE_LOW: &str = "HZ-023";
    pub const PRESSURE_CHANNELS: &str = "HZ-024";
    pub const TEMPERATURE_STUCK: &str = "HZ-025";
    pub const ISLAND_RESTART: &str = "ISLAND_RESTART";
    pub const ISLAND_PANIC: &str = "ISLAND_PANIC";
}

/// How urgent an alarm is (IEC 60601-1-8 priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    High,
    Medium,
    Low,
}

/// Which device a trip is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Insufflator,
    Light,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Insufflator => "insufflator",
            Device::Light => "light",
        }
    }
}

/// The values behind a trip, formatted into a message off the cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detail {
    /// A pressure against a threshold.
    Pressure { mmhg: f64, threshold: f64 },
    /// The two pressure channels: their readings and what is wrong.
    Channels { a: Option<f64>, b: Option<f64>, what: &'static str },
    /// A temperature against a threshold.
    Temperature { celsius: f64, threshold: f64 },
    /// A stuck temperature sensor.
    StuckTemperature { sensor: &'static str, celsius: f64 },
    /// The safety word read back differs from what was written.
    Echo { device: Device, wrote: u16, read: u16 },
    /// The pressure stayed under P1 minus the margin.
    LowPressure { mmhg: f64, p1: f64 },
    /// Readings missing or stale.
    Missing { what: &'static str, cap_pct: u16 },
    /// The tower entered its safe state.
    SafeState,
    /// A stalled island was replaced.
    Handover { stalled_ms: u64 },
    /// A panic in a cycle was caught (its message, when static).
    Panic { message: &'static str },
    /// A plain text.
    Text(&'static str),
}

/// One alarm edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    pub code: &'static str,
    pub active: bool,
    pub detail: Detail,
}

impl Trip {
    pub fn raise(code: &'static str, detail: Detail) -> Trip {
        Trip { code, active: true, detail }
    }
    pub fn clear(code: &'static str, detail: Detail) -> Trip {
        Trip { code, active: false, detail }
    }

    pub fn priority(&self) -> Priority {
        match self.code {
            code::SAFETY_WORD_NOT_APPLIED
            | code::NO_TEMPERATURE
            | code::PRESSURE_LOW
            | code::PRESSURE_CHANNELS
            | code::TEMPERATURE_STUCK => Priority::Medium,
            code::ISLAND_PANIC => Priority::Low,
            _ => Priority::High,
        }
    }

    /// The operator's message (allocates: call it off the cycle).
    pub fn message(&self) -> String {
        let on = self.active;
        match self.detail {
            Detail::Pressure { mmhg, threshold } => match (self.code, on) {
                (code::OVER_PRESSURE_VENT, true) => format!("pressure {mmhg:.2} mmHg >= P2 {threshold:.1} mmHg: relief valve forced open"),
                (code::OVER_PRESSURE_VENT, false) => format!("pressure {mmhg:.2} mmHg back under P1 {threshold:.1} mmHg: relief released"),
                (_, true) => format!("pressure {mmhg:.2} mmHg >= P1 + margin {threshold:.1} mmHg: inflow inhibited"),
                (_, false) => format!("pressure {mmhg:.2} mmHg back under P1 {threshold:.1} mmHg: inflow released"),
            },
            Detail::Channels { a, b, what } => {
                let v = |x: Option<f64>| x.map_or("--".to_string(), |p| format!("{p:.2}"));
                if on {
                    format!(
                        "pressure channels {what} (PRESSURE {} / PRESSURE_2 {} mmHg): inflow inhibited, venting on the higher",
                        v(a),
                        v(b)
                    )
                } else {
                    format!("pressure channels agree again (PRESSURE {} / PRESSURE_2 {} mmHg)", v(a), v(b))
                }
            }
            Detail::Temperature { celsius, threshold } => match (self.code, on) {
                (code::LED_OVER_TEMPERATURE, true) => format!("LED temperature {celsius:.1} C >= {threshold:.1} C: LED switched off"),
                (code::LED_OVER_TEMPERATURE, false) => {
                    format!("LED temperature {celsius:.1} C cooled below {threshold:.1} C: LED released")
                }
                (_, true) => format!("light cable tip {celsius:.1} C >= {threshold:.1} C: drive capped"),
                (_, false) => format!("light cable tip {celsius:.1} C back under {threshold:.1} C"),
            },
            Detail::StuckTemperature { sensor, celsius } => {
                if on {
                    format!("{sensor} temperature stuck at {celsius:.1} C while the drive changed: treated as missing, drive capped")
                } else {
                    format!("{sensor} temperature moving again ({celsius:.1} C)")
                }
            }
            Detail::Echo { device, wrote, read } => {
                if on {
                    format!("{} safety word read back as {read}, wrote {wrote}", device.name())
                } else {
                    format!("{} safety word read-back ok", device.name())
                }
            }
            Detail::LowPressure { mmhg, p1 } => {
                if on {
                    format!("pressure {mmhg:.1} mmHg well under the set {p1:.1} mmHg: insufflation not holding (leak, empty supply, or no control)")
                } else {
                    format!("pressure back to {mmhg:.1} mmHg (set {p1:.1} mmHg)")
                }
            }
            Detail::Missing { what, cap_pct } => {
                if on {
                    if cap_pct < 100 {
                        format!("{what} missing, stale or out of range: drive capped at {cap_pct} %")
                    } else {
                        format!("{what} missing, stale or out of range: inflow inhibited")
                    }
                } else {
                    format!("{what} readings back")
                }
            }
            Detail::SafeState => {
                if on {
                    "tower safe state: inflow inhibited, light capped".into()
                } else {
                    "tower safe state released".into()
                }
            }
            Detail::Handover { stalled_ms } => {
                if on {
                    format!("safety island stalled for {stalled_ms} ms: a new island took over with its latched state")
                } else {
                    "safety island cycling again".into()
                }
            }
            Detail::Panic { message } => format!("panic in a safety island cycle caught; connections rebuilt, loop continues: {message}"),
            Detail::Text(t) => t.to_string(),
        }
    }
}

/// Where the island's alarms go. Called on the island's alarm thread, never
/// on the island's own; it may take locks and block.
pub trait TripSink: Send + Sync + 'static {
    fn deliver(&self, trip: &Trip);
}

/// The trips of one cycle, without allocation: at most [`TripBuf::CAP`]
/// edges; more in one cycle are dropped and counted (a cycle produces a
/// handful at most).
#[derive(Debug)]
pub struct TripBuf {
    items: [Option<Trip>; TripBuf::CAP],
    len: usize,
    pub dropped: u64,
}

impl Default for TripBuf {
    fn default() -> Self {
        TripBuf { items: [None; TripBuf::CAP], len: 0, dropped: 0 }
    }
}

impl TripBuf {
    pub const CAP: usize = 32;

    pub fn push(&mut self, t: Trip) {
        if self.len < Self::CAP {
            self.items[self.len] = Some(t);
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Trip> {
        self.items[..self.len].iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Remove and return the first trip.
    pub fn pop_front(&mut self) -> Option<Trip> {
        if self.len == 0 {
            return None;
        }
        let first = self.items[0].take();
        self.items.copy_within(1..self.len, 0);
        self.len -= 1;
        self.items[self.len] = None;
        first
    }
}
