//! The report of a run: `report.json` (everything, for tools) and
//! `report.md` (for people: each invariant pass or fail with its worst case,
//! the timeline as executed, the counts, the plots).

use super::file::Scenario;
use super::invariants::Outcome;
use super::record::{ActionRecord, EndState, RunRecord};
use super::trace::{MarkerKind, Trace};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub faults: usize,
    pub alarms: usize,
    pub interlock_trips: usize,
    pub restarts: usize,
    pub events: usize,
    pub failed_steps: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub file: String,
    pub description: String,
    pub hazards: Vec<String>,
    pub pass: bool,
    pub seed: u64,
    pub time_scale: f64,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub warmup_s: f64,
    pub peak_rss_mib: f64,
    pub counts: Counts,
    pub invariants: Vec<Outcome>,
    pub timeline: Vec<ActionRecord>,
    pub end: EndState,
    pub plots: Vec<String>,
    /// Event bodies the hospital-side MQTT observer received, in order.
    pub mqtt_events: Vec<serde_json::Value>,
}

impl Report {
    pub fn new(
        s: &Scenario,
        rec: &RunRecord,
        trace: &Trace,
        outcomes: Vec<Outcome>,
        seed: u64,
        time_scale: f64,
        plots: &[PathBuf],
    ) -> Report {
        let count = |k: MarkerKind| trace.markers.iter().filter(|m| m.kind == k).count();
        let failed_steps = rec.actions.iter().filter(|a| a.error.is_some() && !a.may_fail).count();
        Report {
            scenario: s.name.clone(),
            file: s.path.display().to_string(),
            description: s.description.clone(),
            hazards: s.hazards.clone(),
            // A step that could not be carried out makes the run inconclusive: fail.
            pass: outcomes.iter().all(|o| o.pass) && failed_steps == 0,
            seed,
            time_scale,
            simulated_s: rec.sim_s,
            wall_s: rec.wall_s,
            warmup_s: rec.warmup_s,
            peak_rss_mib: trace.samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
            counts: Counts {
                faults: rec.actions.iter().filter(|a| a.fault).count(),
                alarms: count(MarkerKind::Alarm),
                interlock_trips: count(MarkerKind::Trip),
                restarts: count(MarkerKind::Restart),
                events: rec.events.len(),
                failed_steps,
            },
            invariants: outcomes,
            timeline: rec.actions.clone(),
            end: rec.end.clone(),
            plots: plots.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect(),
            mqtt_events: rec.mqtt_events.clone().unwrap_or_default(),
        }
    }

    pub fn markdown(&self, rec: &RunRecord) -> String {
        let mut m = String::new();
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        let _ = writeln!(m, "# Scenario `{}`: {verdict}\n", self.scenario);
        let _ = writeln!(m, "{}\n", self.description);
        let _ = writeln!(m, "- file: `{}`", self.file);
        let _ = writeln!(m, "- hazards: {}", if self.hazards.is_empty() { "-".into() } else { self.hazards.join(", ") });
        let _ = writeln!(
            m,
            "- simulated {:.1} s in {:.1} s wall (slow physics x{}), seed {}, warm-up {:.1} s",
            self.simulated_s, self.wall_s, self.time_scale, self.seed, self.warmup_s
        );
        let c = &self.counts;
        let _ = writeln!(
            m,
            "- {} faults injected, {} alarms, {} interlock trips, {} restarts, {} events; peak RSS {:.0} MiB\n",
            c.faults, c.alarms, c.interlock_trips, c.restarts, c.events, self.peak_rss_mib
        );
        let _ = writeln!(m, "## Invariants\n\n| | invariant | worst case | limit |\n|---|---|---|---|");
        for o in &self.invariants {
            let _ = writeln!(m, "| {} | {} | {} | {} |", if o.pass { "pass" } else { "**FAIL**" }, o.invariant, o.worst, o.limit);
        }
        let _ = writeln!(m, "\n## Timeline as executed\n");
        if self.timeline.len() > 40 {
            let _ = writeln!(m, "{} steps; the first 40 (all in report.json):\n", self.timeline.len());
        }
        for a in self.timeline.iter().take(40) {
            let err = match (&a.error, a.may_fail) {
                (Some(e), true) => format!(" — failed as expected: {e}"),
                (Some(e), false) => format!(" — **step failed: {e}**"),
                (None, _) => String::new(),
            };
            let _ = writeln!(m, "- t = {:.2} s: {}{err}", a.done_s, a.label);
        }
        let alarms: Vec<String> = rec
            .events
            .iter()
            .filter(|(_, e)| e.kind == endotower_actors::events::EventKind::AlarmRaised)
            .take(60)
            .map(|(t, e)| format!("- t = {t:.2} s: {} `{}`: {}", e.source, e.code, e.message))
            .collect();
        let _ = writeln!(m, "\n## Alarms raised\n\n{}", if alarms.is_empty() { "none".into() } else { alarms.join("\n") });
        let e = &self.end;
        let _ = writeln!(
            m,
            "\n## End state\n\n- root {}, set pressure {} mmHg, light {} %, safe state {}, AI {}\n- display: {} shown, {} skipped, {} reordered; capture rejected {}\n- active alarms: {}",
            if e.root_running { "running" } else { "stopped" },
            e.set_pressure_mmhg,
            e.intensity_pct,
            e.safe_state,
            if e.ai_online { "online" } else { "offline" },
            e.display_shown,
            e.display_skipped,
            e.display_reordered,
            e.capture_rejected,
            if e.active_alarms.is_empty() { "none".into() } else { e.active_alarms.join(", ") }
        );
        let _ = writeln!(m, "\n## Plots\n");
        for p in &self.plots {
            let _ = writeln!(m, "![{p}]({p})");
        }
        m
    }

    /// Write `report.json` and `report.md` into `dir`.
    pub fn write(&self, rec: &RunRecord, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.md"), self.markdown(rec))
    }
}

/// `endotower scenario summary DIR`: one Markdown table row per
/// `DIR/<scenario>/report.json`, with the verdict and each failed (or else
/// the first) invariant's worst case.
pub fn summary_table(dir: &Path) -> std::io::Result<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let run = entry?.path();
        let run_name = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = run.join("report.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let r: serde_json::Value = serde_json::from_str(&text).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        let invs = r["invariants"].as_array().cloned().unwrap_or_default();
        let failed: Vec<&serde_json::Value> = invs.iter().filter(|i| i["pass"] == false).collect();
        let shown: Vec<String> = if failed.is_empty() { invs.iter().take(1).collect::<Vec<_>>() } else { failed }
            .iter()
            .map(|i| format!("{}: {}", i["invariant"].as_str().unwrap_or("?"), i["worst"].as_str().unwrap_or("?")))
            .collect();
        let name = r["scenario"].as_str().unwrap_or("?");
        // A run kept in a directory of another name (e.g. a variant of the scenario).
        let shown_name = if run_name == name { format!("`{name}`") } else { format!("`{name}` (run `{run_name}`)") };
        rows.push(format!(
            "| {} | {} | {}/{} | {:.1} s sim, {:.1} s wall | {} |",
            shown_name,
            if r["pass"] == true { "pass" } else { "**FAIL**" },
            invs.len() - invs.iter().filter(|i| i["pass"] == false).count(),
            invs.len(),
            r["simulated_s"].as_f64().unwrap_or(0.0),
            r["wall_s"].as_f64().unwrap_or(0.0),
            shown.join("; ").replace('|', "/"),
        ));
    }
    rows.sort();
    Ok(format!("| scenario | result | invariants held | duration | worst case |\n|---|---|---|---|---|\n{}\n", rows.join("\n")))
}
