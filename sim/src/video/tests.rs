//! Tests of the synthetic source as a whole; timing and sample images are
//! `#[ignore]`d (run with `--ignored`).

use std::sync::Arc;
use std::time::Instant;

use super::*;

fn small(seed: u64) -> SyntheticConfig {
    SyntheticConfig { width: 320, height: 180, fps: 30.0, seed, ..SyntheticConfig::default() }
}

fn digest(seed: u64, frames: usize) -> u64 {
    let mut src = SyntheticSource::new(small(seed)).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..frames {
        let f = src.next_frame();
        let bytes = f.as_ref().map_or(&[][..], |f| &f.rgb[..]);
        for b in bytes.iter().step_by(7).chain(&[u8::from(f.is_some())]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[test]
fn the_same_seed_gives_bit_identical_video_and_another_seed_differs() {
    assert_eq!(digest(4, 100), digest(4, 100));
    assert_ne!(digest(4, 100), digest(5, 100));
}

#[test]
fn a_frozen_frame_is_the_same_buffer_as_the_frame_it_repeats() {
    let mut cfg = small(6);
    cfg.episodes.freeze_per_min = 30.0;
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut prev: Option<SyntheticFrame> = None;
    let mut frozen = 0;
    for _ in 0..3000 {
        let Some(f) = src.next_frame() else { continue };
        if f.episode == Episode::Freeze {
            if let Some(p) = &prev {
                if p.episode == Episode::Freeze {
                    assert!(std::sync::Arc::ptr_eq(&p.rgb, &f.rgb));
                    assert_eq!(p.truth.len(), f.truth.len());
                    frozen += 1;
                }
            }
        }
        prev = Some(f);
    }
    assert!(frozen > 10, "only {frozen} repeated frozen frames");
}

fn write_ppm(path: &std::path::Path, f: &SyntheticFrame) {
    let mut data = format!("P6\n{} {}\n255\n", f.width, f.height).into_bytes();
    data.extend_from_slice(&f.rgb);
    std::fs::write(path, data).unwrap();
}

/// Writes sample frames to /tmp/video_samples (one per site, one per lesion
/// class, one blurred, one with truth boxes drawn).
#[test]
#[ignore]
fn write_samples() {
    let dir = std::path::Path::new("/tmp/video_samples");
    std::fs::create_dir_all(dir).unwrap();
    let cfg =
        SyntheticConfig { episodes: EpisodeConfig { motion_blur_per_min: 6.0, ..EpisodeConfig::default() }, ..SyntheticConfig::default() };
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut sites = [false; 3];
    let mut classes = [false; 3];
    let mut blurred = false;
    for _ in 0..60 * 60 * 3 {
        let Some(f) = src.next_frame() else { continue };
        if f.episode == Episode::Clear && !sites[f.site.index()] && f.index % 600 == 300 {
            sites[f.site.index()] = true;
            write_ppm(&dir.join(format!("site_{}.ppm", f.site.name())), &f);
        }
        if f.episode == Episode::Clear {
            for b in &f.truth {
                let c = b.class.index();
                let whole = b.x0 > 10.0 && b.y0 > 10.0 && b.x1 < f.width as f32 - 10.0 && b.y1 < f.height as f32 - 10.0;
                if !classes[c] && whole && b.height() > 60.0 && f.index % 7 == 0 {
                    classes[c] = true;
                    write_ppm(&dir.join(format!("lesion_{}_{}.ppm", b.class.name(), f.site.name())), &f);
                    println!("{}: {:?}", b.class.name(), f.truth);
                }
            }
        }
        if f.episode == Episode::MotionBlur && !blurred && !f.truth.is_empty() {
            blurred = true;
            write_ppm(&dir.join(format!("blur_{:.0}px.ppm", f.blur_px)), &f);
        }
        if sites.iter().all(|&s| s) && classes.iter().all(|&s| s) && blurred {
            break;
        }
    }
    println!("sites {sites:?} classes {classes:?} blurred {blurred}");
}

/// CPU time of the calling thread in ns (Linux), so timings on a shared
/// machine can leave out the time the thread waited for a core.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

fn time_frames(width: u32, height: u32, fps: f64, frames: usize) -> (f64, f64) {
    let t0 = Instant::now();
    let cfg = SyntheticConfig { width, height, fps, ..SyntheticConfig::default() };
    let mut src = SyntheticSource::new(cfg).unwrap();
    let init = t0.elapsed().as_secs_f64() * 1e3;
    // Per episode: count, total ms, worst ms, total CPU ms of this thread.
    let mut stats = [(0u32, 0.0f64, 0.0f64, 0.0f64); 5];
    let t1 = Instant::now();
    let mut rendered = 0;
    let cpu0 = thread_cpu_ns();
    for _ in 0..frames {
        let s = Instant::now();
        let c = thread_cpu_ns();
        let f = src.next_frame();
        let ms = s.elapsed().as_secs_f64() * 1e3;
        let cpu_ms = thread_cpu_ns().zip(c).map(|(b, a)| (b - a) as f64 / 1e6);
        let e = f.as_ref().map_or(Episode::Dropout, |f| f.episode);
        if matches!(e, Episode::Clear | Episode::MotionBlur | Episode::Black) {
            rendered += 1;
        }
        let st = &mut stats[e as usize];
        *st = (st.0 + 1, st.1 + ms, st.2.max(ms), st.3 + cpu_ms.unwrap_or(f64::NAN));
    }
    let per = t1.elapsed().as_secs_f64() * 1e3 / rendered.max(1) as f64;
    let cpu = thread_cpu_ns().zip(cpu0).map_or(f64::NAN, |(b, a)| (b - a) as f64 / 1e6 / rendered.max(1) as f64);
    println!("{width}x{height}@{fps}: init {init:.0} ms, {per:.2} ms wall ({cpu:.2} ms CPU) per rendered frame ({rendered} of {frames})");
    for (e, (n, total, worst, cpu)) in Episode::ALL.iter().zip(stats) {
        if n > 0 {
            let (mean, mean_cpu) = (total / f64::from(n), cpu / f64::from(n));
            println!("  {:<12} {n:>5} frames, mean {mean:.2} ms wall ({mean_cpu:.2} ms CPU), worst {worst:.2} ms wall", e.name());
        }
    }
    (per, stats[0].2)
}

/// Prints ms per frame; not a pass/fail check.
#[test]
#[ignore]
fn timing() {
    time_frames(1280, 720, 60.0, 1200);
    time_frames(1920, 1080, 30.0, 600);
}

/// Rates high enough that a few minutes of video hold every episode often.
fn busy(seed: u64) -> SyntheticConfig {
    let mut cfg = small(seed);
    cfg.episodes = EpisodeConfig {
        motion_blur_per_min: 12.0,
        freeze_per_min: 6.0,
        black_per_min: 6.0,
        dropout_per_min: 12.0,
        ..EpisodeConfig::default()
    };
    cfg
}

#[test]
fn episodes_change_only_what_they_should() {
    // Same seed, with and without disturbances: the scene is the same, so a
    // clear frame is bit-identical to the undisturbed one and a blurred
    // frame keeps the undisturbed (sharp) truth.
    let mut a = SyntheticSource::new(busy(11)).unwrap();
    let mut b = SyntheticSource::new(SyntheticConfig { episodes: EpisodeConfig::none(), ..busy(11) }).unwrap();
    let mut last: Option<SyntheticFrame> = None;
    let mut seen = [0u32; 5];
    let mut dropped_run = 0u32;
    for i in 0..30 * 180 {
        let sharp = b.next_frame().unwrap();
        assert_eq!(sharp.episode, Episode::Clear);
        let Some(f) = a.next_frame() else {
            dropped_run += 1;
            assert!(dropped_run <= 3, "dropout longer than 3 frames at {i}");
            seen[Episode::Dropout as usize] += 1;
            continue;
        };
        dropped_run = 0;
        assert_eq!(f.index, i);
        assert_eq!(f.rgb.len(), 320 * 180 * 3);
        seen[f.episode as usize] += 1;
        match f.episode {
            Episode::Clear => {
                assert_eq!(f.rgb, sharp.rgb, "frame {i}");
                assert_eq!(f.truth, sharp.truth);
                assert_eq!(f.site, sharp.site);
                assert_eq!(f.blur_px, 0.0);
            }
            Episode::MotionBlur => {
                assert_ne!(f.rgb, sharp.rgb);
                assert_eq!(f.truth, sharp.truth);
                assert!((8.0..=30.0).contains(&f.blur_px), "{}", f.blur_px);
            }
            Episode::Black => {
                assert!(f.rgb.iter().all(|&v| v <= 8));
                assert!(f.truth.is_empty());
            }
            Episode::Freeze => {
                let prev = last.as_ref().unwrap();
                assert!(Arc::ptr_eq(&prev.rgb, &f.rgb));
                assert_eq!(prev.truth, f.truth);
            }
            Episode::Dropout => unreachable!(),
        }
        last = Some(f);
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}

#[test]
fn truth_boxes_are_inside_the_frame_and_sized_as_configured() {
    let mut cfg = small(12);
    cfg.fps = 10.0;
    cfg.episodes = EpisodeConfig::none();
    let (w, h) = (cfg.width as f32, cfg.height as f32);
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut per_class = [0u32; 3];
    let mut counts = [0u32; 3];
    let mut largest = 0.0f32;
    for _ in 0..3000 {
        let f = src.next_frame().unwrap();
        assert!(f.truth.len() <= 2);
        counts[f.truth.len()] += 1;
        for b in &f.truth {
            assert!(0.0 <= b.x0 && b.x0 < b.x1 && b.x1 <= w && 0.0 <= b.y0 && b.y0 < b.y1 && b.y1 <= h, "{b:?}");
            assert!(b.width() <= 0.25 * h && b.height() <= 0.25 * h, "{b:?}");
            largest = largest.max(b.width().max(b.height()));
            per_class[b.class.index()] += 1;
        }
    }
    assert!(per_class.iter().all(|&n| n > 100), "{per_class:?}");
    assert!(counts.iter().all(|&n| n > 100), "frames with 0/1/2 lesions: {counts:?}");
    assert!(largest >= 0.11 * h, "{largest}");
}

#[test]
fn consecutive_frames_differ_and_sites_change_every_20_to_40_s() {
    let mut cfg = small(13);
    cfg.fps = 5.0;
    cfg.episodes = EpisodeConfig::none();
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut prev = src.next_frame().unwrap();
    let mut changes = vec![0u64];
    for _ in 0..3000 {
        let f = src.next_frame().unwrap();
        assert_ne!(f.rgb, prev.rgb);
        if f.site != prev.site {
            changes.push(f.index);
        }
        prev = f;
    }
    assert!(changes.len() > 10, "{changes:?}");
    for pair in changes.windows(2) {
        let secs = (pair[1] - pair[0]) as f64 / 5.0;
        assert!((20.0..=40.2).contains(&secs), "{secs}");
    }
}

/// Mean colour of a region of interest of a frame.
fn mean_rgb(f: &SyntheticFrame, x0: usize, y0: usize, x1: usize, y1: usize) -> [f64; 3] {
    let mut sum = [0.0f64; 3];
    let mut n = 0.0f64;
    for y in y0..y1 {
        for x in x0..x1 {
            let p = (y * f.width as usize + x) * 3;
            for (s, v) in sum.iter_mut().zip(&f.rgb[p..p + 3]) {
                *s += f64::from(*v);
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n.max(1.0))
}

#[test]
fn classes_and_sites_have_distinct_colours() {
    let cfg =
        SyntheticConfig { width: 640, height: 360, fps: 5.0, seed: 14, episodes: EpisodeConfig::none(), ..SyntheticConfig::default() };
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut class_sum = [[0.0f64; 3]; 3];
    let mut class_n = [0.0f64; 3];
    let mut site_sum = [[0.0f64; 3]; 3];
    let mut site_n = [0.0f64; 3];
    for _ in 0..2500 {
        let f = src.next_frame().unwrap();
        // Mucosa near the centre (dark lumen and lesions included: they are small).
        let m = mean_rgb(&f, 220, 120, 420, 240);
        for c in 0..3 {
            site_sum[f.site.index()][c] += m[c];
        }
        site_n[f.site.index()] += 1.0;
        for b in &f.truth {
            let (x0, y0, x1, y1) = (b.x0 as usize, b.y0 as usize, b.x1 as usize, b.y1 as usize);
            if b.height() < 16.0 || x0 == 0 || y0 == 0 || x1 == 640 || y1 == 360 {
                continue;
            }
            // The middle third of the box: the lesion's body.
            let (dx, dy) = ((x1 - x0) / 3, (y1 - y0) / 3);
            let m = mean_rgb(&f, x0 + dx, y0 + dy, x1 - dx, y1 - dy);
            for c in 0..3 {
                class_sum[b.class.index()][c] += m[c];
            }
            class_n[b.class.index()] += 1.0;
        }
    }
    let mean = |s: [f64; 3], n: f64| s.map(|v| v / n.max(1.0));
    let [ad, hp, ul] = [0, 1, 2].map(|i| mean(class_sum[i], class_n[i]));
    let g_r = |c: [f64; 3]| c[1] / c[0];
    let yellow = |c: [f64; 3]| (c[1] - c[2]) / c[0];
    let luma = |c: [f64; 3]| c[0] + c[1] + c[2];
    println!("adenoma {ad:?} hyperplastic {hp:?} ulcer {ul:?} (n {class_n:?})");
    assert!(class_n.iter().all(|&n| n > 20.0), "{class_n:?}");
    // Ulcer: yellow-white fibrin; adenoma: dark red-brown; hyperplastic: pale.
    assert!(yellow(ul) > yellow(ad) + 0.05 && yellow(ul) > yellow(hp) + 0.05);
    assert!(g_r(ad) + 0.1 < g_r(hp), "{} {}", g_r(ad), g_r(hp));
    assert!(luma(ad) < 0.8 * luma(hp));
    let [es, st, co] = [0, 1, 2].map(|i| mean(site_sum[i], site_n[i]));
    println!("esophagus {es:?} stomach {st:?} colon {co:?}");
    assert!(g_r(st) + 0.05 < g_r(co) && g_r(co) + 0.05 < g_r(es), "{} {} {}", g_r(st), g_r(co), g_r(es));
}

#[test]
fn extreme_sizes_and_rates_render_without_trouble() {
    for (width, height) in [(64, 64), (3840, 64), (64, 2160), (66, 90)] {
        let mut cfg = busy(15);
        (cfg.width, cfg.height) = (width, height);
        cfg.episodes.blur_px = [1.0, 200.0];
        cfg.lesions.size = [0.02, 0.5];
        let mut src = SyntheticSource::new(cfg).unwrap();
        for _ in 0..60 {
            if let Some(f) = src.next_frame() {
                assert_eq!(f.rgb.len(), width as usize * height as usize * 3);
                for b in &f.truth {
                    assert!(b.x1 <= width as f32 && b.y1 <= height as f32);
                }
            }
        }
    }
}

#[test]
fn config_is_validated_field_by_field_and_serialises_in_snake_case() {
    let bad = |f: fn(&mut SyntheticConfig), field: &str| {
        let mut cfg = SyntheticConfig::default();
        f(&mut cfg);
        let e = SyntheticSource::new(cfg).unwrap_err();
        assert!(matches!(&e, VideoError::Config { field: got, .. } if *got == field), "{field}: {e}");
        assert!(e.to_string().contains(field), "{e}");
    };
    bad(|c| c.width = 1281, "width");
    bad(|c| c.width = 32, "width");
    bad(|c| c.height = 4000, "height");
    bad(|c| c.fps = 0.5, "fps");
    bad(|c| c.fps = f64::NAN, "fps");
    bad(|c| c.lesions.max_visible = 3, "lesions.max_visible");
    bad(|c| c.lesions.size = [0.2, 0.1], "lesions.size");
    bad(|c| c.episodes.blur_px = [8.0, 500.0], "episodes.blur_px");
    bad(|c| c.episodes.dropout_frames = [0, 3], "episodes.dropout_frames");
    bad(|c| c.site_dwell_s = [-1.0, 30.0], "site_dwell_s");

    let d = SyntheticConfig::default();
    assert_eq!((d.width, d.height, d.fps, d.seed), (1280, 720, 60.0, 1));
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<SyntheticConfig>(&json).unwrap(), d);
    let partial: SyntheticConfig = serde_json::from_str(r#"{"width": 640, "episodes": {"freeze_per_min": 0}}"#).unwrap();
    assert_eq!((partial.width, partial.height, partial.episodes.freeze_per_min), (640, 720, 0.0));
    assert!(serde_json::from_str::<SyntheticConfig>(r#"{"widht": 640}"#).is_err());
    assert_eq!(serde_json::to_string(&Episode::MotionBlur).unwrap(), r#""motion_blur""#);
    assert_eq!(serde_json::to_string(&LesionClass::Hyperplastic).unwrap(), r#""hyperplastic""#);
    assert_eq!(serde_json::from_str::<Site>(r#""colon""#).unwrap(), Site::Colon);
    for c in LesionClass::ALL {
        assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.name()));
    }
}
