//! Judging a run: each invariant of the scenario becomes an [`Outcome`]
//! with its measured worst case, whether it held or not.

use super::file::Invariant;
use super::record::RunRecord;
use super::trace::Trace;
use endotower_actors::events::EventKind;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub invariant: String,
    pub pass: bool,
    /// The measured worst case, in words and units.
    pub worst: String,
    /// What it was judged against.
    pub limit: String,
}

fn outcome(inv: &Invariant, pass: bool, worst: String, limit: String) -> Outcome {
    Outcome { invariant: inv.title(), pass, worst, limit }
}

/// Longest stretch (wall ms) with `above(sample)` true, and its start time.
fn longest_stretch(trace: &Trace, time_scale: f64, mut above: impl FnMut(usize) -> bool) -> (f64, f64) {
    let (mut best, mut best_at, mut from) = (0.0f64, 0.0, None::<f64>);
    for (i, s) in trace.samples.iter().enumerate() {
        match (above(i), from) {
            (true, None) => from = Some(s.t_s),
            (false, Some(f)) => {
                if s.t_s - f > best {
                    (best, best_at) = (s.t_s - f, f);
                }
                from = None;
            }
            _ => {}
        }
    }
    if let (Some(f), Some(last)) = (from, trace.samples.last()) {
        // Still above at the end: count it to the last sample (plus one period).
        let d = last.t_s - f + 0.02 * time_scale;
        if d > best {
            (best, best_at) = (d, f);
        }
    }
    (best / time_scale * 1000.0, best_at)
}

fn in_any(t: f64, windows: &[[f64; 2]]) -> bool {
    windows.iter().any(|[a, b]| t >= *a && t <= *b)
}

/// Judge every invariant of the scenario.
pub fn judge(invariants: &[Invariant], rec: &RunRecord, trace: &Trace, time_scale: f64) -> Vec<Outcome> {
    invariants.iter().map(|inv| judge_one(inv, rec, trace, time_scale)).collect()
}

fn judge_one(inv: &Invariant, rec: &RunRecord, trace: &Trace, time_scale: f64) -> Outcome {
    let raised = |code: &str| {
        rec.events.iter().filter(|(_, e)| e.kind == EventKind::AlarmRaised && e.code == code).map(|(t, _)| *t).collect::<Vec<f64>>()
    };
    match inv {
        Invariant::PressureBelow { limit_mmhg, for_ms } => {
            let limit_of = |i: usize| limit_mmhg.unwrap_or_else(|| endotower_actors::config::relief_threshold(rec.p1_mmhg[i]) + 2.0);
            let (ms, at) = longest_stretch(trace, time_scale, |i| trace.samples[i].pressure_mmhg > limit_of(i));
            let peak = trace.samples.iter().map(|s| s.pressure_mmhg).fold(f64::NAN, f64::max);
            let limit = limit_mmhg.map_or("P2 + 2 mmHg".to_string(), |l| format!("{l} mmHg"));
            let worst = if ms > 0.0 {
                format!("peak {peak:.2} mmHg; above the limit for {ms:.0} ms from t = {at:.2} s")
            } else {
                format!("peak {peak:.2} mmHg; never above")
            };
            outcome(inv, ms <= *for_ms as f64, worst, format!("{limit} for at most {for_ms} ms"))
        }
        Invariant::PressureAbove { limit_mmhg, after_s, for_ms } => {
            let limit_of = |i: usize| limit_mmhg.unwrap_or(rec.p1_mmhg[i] - 3.0);
            let judged = |i: usize| trace.samples[i].t_s >= *after_s;
            let (ms, at) = longest_stretch(trace, time_scale, |i| judged(i) && trace.samples[i].pressure_mmhg < limit_of(i));
            let low = trace.samples.iter().filter(|s| s.t_s >= *after_s).map(|s| s.pressure_mmhg).fold(f64::NAN, f64::min);
            let limit = limit_mmhg.map_or("P1 - 3 mmHg".to_string(), |l| format!("{l} mmHg"));
            let worst = if ms > 0.0 {
                format!("lowest {low:.2} mmHg; under the limit for {ms:.0} ms from t = {at:.2} s")
            } else {
                format!("lowest {low:.2} mmHg; never under")
            };
            outcome(inv, ms <= *for_ms as f64, worst, format!("not under {limit} for more than {for_ms} ms after {after_s} s"))
        }
        Invariant::ActorsBack { within_s } => {
            let last_fault = rec.actions.iter().filter(|a| a.fault).map(|a| a.done_s).fold(0.0f64, f64::max);
            // The last sample with a child down; all must be up after it, and soon enough.
            let last_down = rec.children_down.iter().filter(|(_, d)| !d.is_empty()).last();
            let (pass, w) = match last_down {
                None => (true, "every child running throughout".to_string()),
                Some((t, d)) => {
                    let back = t - last_fault;
                    let at_end = rec.children_down.last().is_some_and(|(_, d)| d.is_empty());
                    (
                        at_end && back <= *within_s,
                        format!(
                            "last down at t = {t:.2} s ({back:.2} s after the last fault at {last_fault:.2} s): {d:?}; {}",
                            if at_end { "all running at the end" } else { "NOT all running at the end" }
                        ),
                    )
                }
            };
            outcome(inv, pass, w, format!("every child running within {within_s} s of the last fault, to the end"))
        }
        Invariant::AlarmClearedBy { code, by_s } => {
            let mut active_at_by = false;
            for (_, e) in rec.events.iter().filter(|(t, e)| e.code == *code && *t <= *by_s) {
                match e.kind {
                    EventKind::AlarmRaised => active_at_by = true,
                    EventKind::AlarmCleared => active_at_by = false,
                    _ => {}
                }
            }
            let w =
                if active_at_by { format!("{code} still active at t = {by_s} s") } else { format!("{code} not active at t = {by_s} s") };
            outcome(inv, !active_at_by, w, format!("cleared by {by_s} s"))
        }
        Invariant::NoDeviceFailsafe => {
            let fell: Vec<String> = rec.failsafe_entries.iter().filter(|(_, n)| *n > 0).map(|(d, n)| format!("{d} x{n}")).collect();
            let w = if fell.is_empty() { "no device fell back".to_string() } else { format!("fell back: {}", fell.join(", ")) };
            outcome(inv, fell.is_empty(), w, "no heartbeat fail-safe entry".into())
        }
        Invariant::AlarmCount { code, max } => {
            let n = raised(code).len() as u64;
            outcome(inv, n <= *max, format!("{code} raised {n} times"), format!("at most {max}"))
        }
        Invariant::LedTempBelow { limit_c, for_ms } => {
            let limit = limit_c.unwrap_or(trace.limits.led_max_c + 2.0);
            let (ms, at) = longest_stretch(trace, time_scale, |i| trace.samples[i].led_temp_c > limit);
            let peak = trace.samples.iter().map(|s| s.led_temp_c).fold(f64::NAN, f64::max);
            let worst = format!("peak {peak:.1} C; above {limit:.1} C for {ms:.0} ms (from t = {at:.2} s)");
            outcome(inv, ms <= *for_ms as f64, worst, format!("{limit:.1} C for at most {for_ms} ms"))
        }
        Invariant::InterlocksNotMissed { within_ms } => {
            let window_s = *within_ms as f64 / 1000.0 * time_scale;
            let s = &trace.samples;
            let (mut demands, mut missed, mut slowest) = (0, Vec::new(), 0.0f64);
            let mut check = |start: usize, acted: &dyn Fn(usize) -> bool, what: &str| {
                demands += 1;
                let t0 = s[start].t_s;
                match (start..s.len()).take_while(|&j| s[j].t_s - t0 <= window_s).find(|&j| acted(j)) {
                    Some(j) => slowest = slowest.max((s[j].t_s - t0) / time_scale * 1000.0),
                    None if s.last().is_some_and(|l| l.t_s - t0 < window_s) => {} // ran out of run, not missed
                    None => missed.push(format!("{what} at t = {t0:.2} s")),
                }
            };
            for i in 1..s.len() {
                let p2 = |j: usize| endotower_actors::config::relief_threshold(rec.p1_mmhg[j]);
                if s[i].pressure_mmhg >= p2(i) && s[i - 1].pressure_mmhg < p2(i - 1) {
                    check(i, &|j| s[j].relief_open, "over-pressure vent");
                }
                let led_max = trace.limits.led_max_c;
                if s[i].led_temp_c >= led_max && s[i - 1].led_temp_c < led_max {
                    check(i, &|j| s[j].light_output_pct < 1.0, "LED over-temperature shut-off");
                }
            }
            let worst = if missed.is_empty() {
                format!("{demands} demands, 0 missed, slowest response {slowest:.0} ms (sampled every 20 ms)")
            } else {
                format!("{demands} demands, {} missed: {}", missed.len(), missed.join("; "))
            };
            outcome(inv, missed.is_empty(), worst, format!("every demand answered within {within_ms} ms"))
        }
        Invariant::DisplayGap { max_intervals, except } => {
            if !rec.video {
                return outcome(inv, false, "video is off in this scenario".into(), "-".into());
            }
            // 1 ms for the clocks' granularity: a gap of exactly two intervals is no late frame.
            let limit_ms = max_intervals * rec.frame_interval_ms + 1.0;
            let judged = rec.display_gaps.iter().filter(|(t, _, _)| !in_any(*t, except));
            let (mut worst, mut excused) = ((0.0f64, 0.0), 0);
            for &(t, g, by_source) in judged {
                if by_source {
                    excused += usize::from(g > limit_ms);
                } else if g > worst.0 {
                    worst = (g, t);
                }
            }
            let w = format!(
                "longest wait for a frame the camera had sent {:.1} ms ({:.2} intervals) at t = {:.2} s; {excused} samples over the limit during camera dropouts excused",
                worst.0,
                worst.0 / rec.frame_interval_ms,
                worst.1
            );
            outcome(inv, worst.0 <= limit_ms, w, format!("{max_intervals} intervals = {limit_ms:.1} ms"))
        }
        Invariant::FramesSkipped { max } => {
            let e = &rec.end;
            let w = format!("{} skipped, {} reordered of {} shown", e.display_skipped, e.display_reordered, e.display_shown);
            outcome(
                inv,
                rec.video && e.display_skipped <= *max && e.display_reordered == 0 && e.display_shown > 0,
                w,
                format!("<= {max} skipped, 0 reordered"),
            )
        }
        Invariant::AlarmRaised { code, after_s, within_ms } => {
            let first = raised(code).into_iter().find(|t| *t >= after_s - 1e-9);
            let delay_ms = first.map(|t| (t - after_s) / time_scale * 1000.0);
            let pass = delay_ms.is_some_and(|d| d <= *within_ms as f64);
            let w = delay_ms
                .map_or(format!("{code} never raised after t = {after_s} s"), |d| format!("{code} raised {d:.0} ms after t = {after_s} s"));
            outcome(inv, pass, w, format!("within {within_ms} ms"))
        }
        Invariant::AlarmClearedByEnd { code } => {
            let active: Vec<&String> = rec.end.active_alarms.iter().filter(|k| k.ends_with(&format!("/{code}"))).collect();
            let w = if active.is_empty() { format!("{code} not active at the end") } else { format!("still active: {active:?}") };
            outcome(inv, active.is_empty(), w, "cleared by the end".into())
        }
        Invariant::NoAlarm { code } => {
            let n = raised(code).len();
            outcome(inv, n == 0, format!("{code} raised {n} times"), "never".into())
        }
        Invariant::AlarmsReachMqtt { within_s } => {
            let Some(got) = &rec.mqtt_events else {
                return outcome(inv, false, "no broker in this scenario".into(), "-".into());
            };
            // The MQTT body carries the bus event's source, code and time, not its bus sequence number.
            let key = |source: &str, code: &str, at_ms: u64| format!("{source}/{code}@{at_ms}");
            let received: HashSet<String> = got
                .iter()
                .filter(|b| b["kind"] == "alarm_raised")
                .map(|b| key(b["source"].as_str().unwrap_or(""), b["code"].as_str().unwrap_or(""), b["at_ms"].as_u64().unwrap_or(0)))
                .collect();
            let cutoff = rec.sim_s - within_s * time_scale;
            let due: Vec<_> = rec.events.iter().filter(|(t, e)| e.kind == EventKind::AlarmRaised && *t <= cutoff).collect();
            let lost: Vec<String> = due
                .iter()
                .filter(|(_, e)| !received.contains(&key(&e.source, &e.code, e.at_ms)))
                .map(|(t, e)| format!("{} at {t:.1} s", e.code))
                .collect();
            let w = format!(
                "{} of {} alarms arrived ({} MQTT events received, observer connected {} times); lost: {}",
                due.len() - lost.len(),
                due.len(),
                got.len(),
                rec.mqtt_connects,
                if lost.is_empty() { "none".into() } else { lost.join(", ") }
            );
            outcome(inv, lost.is_empty(), w, format!("every alarm raised up to {within_s} s before the end"))
        }
        Invariant::NoEscapedPanic { safe_state_expected } => {
            let e = &rec.end;
            let down: Vec<String> = e.children.iter().filter(|(_, c)| !c.running).map(|(s, c)| format!("{s}/{}", c.name)).collect();
            let meltdowns = rec.events.iter().filter(|(_, e)| e.code == "MELTDOWN" && e.kind == EventKind::AlarmRaised).count();
            let safe = rec.events.iter().any(|(_, e)| e.code == "SAFE_STATE") || e.safe_state;
            let pass = e.root_running && down.is_empty() && (safe == *safe_state_expected) && (meltdowns == 0 || *safe_state_expected);
            let w = format!(
                "root {}, {} children down {:?}, {meltdowns} meltdowns, safe state {}",
                if e.root_running { "running" } else { "STOPPED" },
                down.len(),
                down,
                if safe { "entered" } else { "not entered" }
            );
            outcome(
                inv,
                pass,
                w,
                format!("root up, every child running at the end, safe state {}", if *safe_state_expected { "expected" } else { "never" }),
            )
        }
        Invariant::Restarted { actor, min } => {
            let c = rec.end.children.iter().find(|(_, c)| &c.name == actor).map(|(_, c)| c.clone());
            let w = c.as_ref().map_or(format!("{actor} not in the tree"), |c| {
                format!("{} restarts, {}", c.restarts, if c.running { "running" } else { "NOT running" })
            });
            outcome(inv, c.is_some_and(|c| c.restarts >= *min && c.running), w, format!(">= {min} restarts and running at the end"))
        }
        Invariant::AiOnlineAtEnd => outcome(
            inv,
            rec.end.ai_online,
            format!("AI {}", if rec.end.ai_online { "online" } else { "offline" }),
            "online at the end".into(),
        ),
        Invariant::AiWentOffline => outcome(
            inv,
            rec.ai_went_offline,
            format!("AI {}", if rec.ai_went_offline { "went offline" } else { "never offline" }),
            "offline at least once".into(),
        ),
        Invariant::MemoryBelow { max_mib } => {
            let peak = trace.samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
            outcome(inv, peak <= *max_mib, format!("peak RSS {peak:.0} MiB"), format!("<= {max_mib} MiB"))
        }
        Invariant::MemoryFlat { max_growth_mib } => {
            // A leak keeps growing; an allocator's high-water mark after the
            // first faults of each kind does not. Compare the middle tenth of
            // the run with the last tenth (medians).
            let n = trace.samples.len();
            let median = |from: usize, to: usize| {
                let mut xs: Vec<f64> = trace.samples[from..to].iter().map(|s| s.rss_mib).collect();
                xs.sort_by(f64::total_cmp);
                xs.get(xs.len() / 2).copied().unwrap_or(0.0)
            };
            if n < 20 {
                return outcome(inv, false, format!("{n} samples: too few to judge"), format!("growth <= {max_growth_mib} MiB"));
            }
            let (first, mid, last) = (median(0, n / 10), median(n * 4 / 10, n / 2), median(n - n / 10, n));
            let w = format!(
                "median RSS {first:.1} MiB (first tenth), {mid:.1} (middle), {last:.1} (last tenth): {:+.1} MiB over the second half",
                last - mid
            );
            outcome(inv, last - mid <= *max_growth_mib, w, format!("growth <= {max_growth_mib} MiB from the middle to the last tenth"))
        }
        Invariant::SetpointsAtEnd { pressure_mmhg, intensity_pct } => {
            let e = &rec.end;
            let ok = pressure_mmhg.is_none_or(|p| (e.set_pressure_mmhg - p).abs() < 1e-6)
                && intensity_pct.is_none_or(|p| (e.intensity_pct - p).abs() < 1e-6);
            outcome(
                inv,
                ok,
                format!("P1 {} mmHg, light {} %", e.set_pressure_mmhg, e.intensity_pct),
                format!("P1 {pressure_mmhg:?}, light {intensity_pct:?}"),
            )
        }
        Invariant::RemoteReplies { status, count } => {
            let got: Vec<String> = rec.mqtt_replies.iter().map(|r| r["status"].as_str().unwrap_or("?").to_string()).collect();
            let matching = got.iter().filter(|s| *s == status).count();
            let reasons: Vec<String> = rec.mqtt_replies.iter().filter_map(|r| r["reason"].as_str().map(str::to_string)).collect();
            outcome(
                inv,
                matching == *count && got.len() == *count,
                format!("{} replies, {matching} {status}; reasons: {reasons:?}", got.len()),
                format!("{count} replies, all {status}"),
            )
        }
        Invariant::StillsArchived { min } => {
            let n = rec.events.iter().filter(|(_, e)| e.kind == EventKind::Capture).count() as u64;
            outcome(inv, n >= *min, format!("{n} stills archived"), format!(">= {min}"))
        }
        Invariant::FramesRejected { min } => {
            let n = rec.end.capture_rejected;
            outcome(inv, n >= *min, format!("{n} malformed frames rejected"), format!(">= {min}"))
        }
    }
}
