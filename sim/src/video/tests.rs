//! Tests of the synthetic source as a whole; timing and sample images are
//! `#[ignore]`d (run with `--ignored`).

use std::time::Instant;

use super::*;

fn small(seed: u64) -> SyntheticConfig {
    SyntheticConfig {
        width: 320,
        height: 180,
        fps: 30.0,
        seed,
        ..SyntheticConfig::default()
    }
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
    let cfg = SyntheticConfig { episodes: EpisodeConfig { motion_blur_per_min: 6.0, ..EpisodeConfig::default() }, ..SyntheticConfig::default() };
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

fn time_frames(width: u32, height: u32, fps: f64, frames: usize) -> (f64, f64) {
    let t0 = Instant::now();
    let cfg = SyntheticConfig { width, height, fps, ..SyntheticConfig::default() };
    let mut src = SyntheticSource::new(cfg).unwrap();
    let init = t0.elapsed().as_secs_f64() * 1e3;
    // Per episode: count, total ms, worst ms.
    let mut stats = [(0u32, 0.0f64, 0.0f64); 5];
    let t1 = Instant::now();
    let mut rendered = 0;
    for _ in 0..frames {
        let s = Instant::now();
        let f = src.next_frame();
        let ms = s.elapsed().as_secs_f64() * 1e3;
        let e = f.as_ref().map_or(Episode::Dropout, |f| f.episode);
        if matches!(e, Episode::Clear | Episode::MotionBlur | Episode::Black) {
            rendered += 1;
        }
        let st = &mut stats[e as usize];
        *st = (st.0 + 1, st.1 + ms, st.2.max(ms));
    }
    let per = t1.elapsed().as_secs_f64() * 1e3 / rendered.max(1) as f64;
    println!("{width}x{height}@{fps}: init {init:.0} ms, {per:.2} ms per rendered frame ({rendered} of {frames})");
    for (e, (n, total, worst)) in Episode::ALL.iter().zip(stats) {
        if n > 0 {
            println!("  {:<12} {n:>5} frames, mean {:.2} ms, worst {worst:.2} ms", e.name(), total / f64::from(n));
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
