//! Benchmarks, one convention for all: `endotower bench <NAME> [--quick] [--json]`.
//! `--json` prints one JSON object with at least `name`, `unit`, `n`, `p50`,
//! `p99` and `max`; `--quick` finishes in under 60 s. Timing lives here, never
//! in pass/fail tests.

pub mod display;
pub mod enhance;
#[cfg(feature = "fault-injection")]
pub mod handover;
pub mod interlock;
pub mod mqtt;
pub mod remote_inference;
pub mod video;

use serde::Serialize;

/// Summary statistics of one series of samples.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub label: String,
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    pub fn of(label: &str, samples: &[f64]) -> Stats {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
            v[i.min(v.len() - 1)]
        };
        let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        Stats { label: label.to_string(), n: v.len(), p50: pct(50.0), p99: pct(99.0), max: v.last().copied().unwrap_or(f64::NAN), mean }
    }
}

/// One benchmark's result: the headline over all samples plus each run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub name: String,
    pub unit: String,
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub runs: Vec<Stats>,
    /// Anything else worth knowing (misses, target, settings).
    pub notes: serde_json::Value,
}

impl BenchReport {
    /// A report whose headline is `total` over all runs.
    pub fn new(name: &str, unit: &str, total: &Stats, runs: Vec<Stats>, notes: serde_json::Value) -> Self {
        Self { name: name.into(), unit: unit.into(), n: total.n, p50: total.p50, p99: total.p99, max: total.max, runs, notes }
    }

    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("cannot serialise the report: {e}"),
            }
            return;
        }
        println!("bench {} ({})", self.name, self.unit);
        println!("{:<12} {:>8} {:>10} {:>10} {:>10} {:>10}", "run", "n", "p50", "p99", "max", "mean");
        for r in &self.runs {
            println!("{:<12} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}", r.label, r.n, r.p50, r.p99, r.max, r.mean);
        }
        println!("{:<12} {:>8} {:>10.1} {:>10.1} {:>10.1}", "all", self.n, self.p50, self.p99, self.max);
        println!("notes: {}", self.notes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of("x", &v);
        assert_eq!((s.n, s.p50, s.p99, s.max), (100, 51.0, 99.0, 100.0));
        assert_eq!(s.mean, 50.5);
    }
}
