//! Motion blur: a box kernel `length` pixels long along any direction, done as
//! running sums along digital lines, so the cost per pixel does not depend on
//! the blur length.
//!
//! For a mostly-horizontal direction with slope `s = dy/dx`, the frame is cut
//! into the digital lines `y = y0 + round(s * x)`; every pixel lies on exactly
//! one of them, and each is box-filtered on its own (edges replicated).
//! Mostly-vertical directions do the same with x and y swapped.

/// Blur packed RGB8 `rgb` (`w` x `h`) along the unit direction (`dx`, `dy`)
/// by a box of `length` pixels. A length under 1.5 pixels does nothing.
pub(crate) fn motion_blur(rgb: &mut [u8], w: usize, h: usize, dx: f32, dy: f32, length: f32) {
    if w == 0 || h == 0 || rgb.len() < w * h * 3 || !length.is_finite() || length < 1.5 {
        return;
    }
    let horizontal = dx.abs() >= dy.abs();
    // Along the major axis (`n` steps long, `lines` apart on the minor one).
    let (n, minor) = if horizontal { (w, h) } else { (h, w) };
    let slope = if horizontal { dy / dx } else { dx / dy };
    let slope = if slope.is_finite() { slope } else { 0.0 };
    let taps = ((length / (1.0 + slope * slope).sqrt()).round() as usize).clamp(1, 4 * n);
    if taps < 2 {
        return;
    }
    let offsets: Vec<i64> = (0..n).map(|i| (slope * i as f32).round() as i64).collect();
    let (lo, hi) = offsets.iter().fold((0i64, 0i64), |(a, b), &o| (a.min(o), b.max(o)));

    let mut line: Vec<[u32; 3]> = Vec::with_capacity(n);
    let mut at: Vec<usize> = Vec::with_capacity(n);
    let mut prefix: Vec<[u32; 3]> = Vec::with_capacity(n + taps + 1);
    let inv = (1u64 << 32) / taps as u64;
    // Each line starts at minor coordinate m0 (at major coordinate 0).
    for m0 in (-hi)..(minor as i64 - lo) {
        line.clear();
        at.clear();
        for (i, &o) in offsets.iter().enumerate() {
            let m = m0 + o;
            if m < 0 || m >= minor as i64 {
                continue;
            }
            let (x, y) = if horizontal { (i, m as usize) } else { (m as usize, i) };
            let p = (y * w + x) * 3;
            if let Some(px) = rgb.get(p..p + 3) {
                line.push([u32::from(px[0]), u32::from(px[1]), u32::from(px[2])]);
                at.push(p);
            }
        }
        let len = line.len();
        if len < 2 {
            continue;
        }
        // Prefix sums over the line padded by its end values.
        let before = taps / 2;
        prefix.clear();
        let mut acc = [0u32; 3];
        prefix.push(acc);
        for k in 0..len + taps {
            let idx = (k as i64 - before as i64).clamp(0, len as i64 - 1) as usize;
            let v = line.get(idx).copied().unwrap_or([0; 3]);
            for c in 0..3 {
                acc[c] += v[c];
            }
            prefix.push(acc);
        }
        for (k, &p) in at.iter().enumerate() {
            let (Some(a), Some(b)) = (prefix.get(k), prefix.get(k + taps)) else {
                continue;
            };
            if let Some(px) = rgb.get_mut(p..p + 3) {
                for c in 0..3 {
                    let sum = u64::from(b[c] - a[c]);
                    px[c] = ((sum * inv + (1 << 31)) >> 32).min(255) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize) -> Vec<u8> {
        let mut v = vec![0u8; w * h * 3];
        // One bright pixel in the middle.
        let p = ((h / 2) * w + w / 2) * 3;
        v[p..p + 3].copy_from_slice(&[255, 255, 255]);
        v
    }

    #[test]
    fn a_point_becomes_a_line_along_the_direction() {
        let (w, h) = (64, 48);
        for (dx, dy, expect_dir) in [(1.0f32, 0.0f32, (1, 0)), (0.0, 1.0, (0, 1)), (0.7071, 0.7071, (1, 1))] {
            let mut f = frame(w, h);
            motion_blur(&mut f, w, h, dx, dy, 10.0);
            let lit: Vec<(i64, i64)> = (0..w * h)
                .filter(|i| f[i * 3] > 0)
                .map(|i| ((i % w) as i64 - 32, (i / w) as i64 - 24))
                .collect();
            assert!(lit.len() >= 6, "{lit:?}");
            // Every lit pixel lies on the line through the centre.
            for (x, y) in &lit {
                assert_eq!(x * expect_dir.1, y * expect_dir.0, "{lit:?}");
            }
            // Energy is (nearly) kept.
            let total: u32 = f.iter().step_by(3).map(|&v| u32::from(v)).sum();
            assert!((230..=280).contains(&total), "{total}");
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_degenerate_input_is_harmless() {
        let (w, h) = (40, 30);
        let mut f = vec![77u8; w * h * 3];
        motion_blur(&mut f, w, h, 0.3, -0.9, 25.0);
        assert!(f.iter().all(|&v| v == 77));
        motion_blur(&mut f, w, h, 0.0, 0.0, 25.0);
        motion_blur(&mut f, w, h, f32::NAN, 1.0, f32::INFINITY);
        motion_blur(&mut f[..10], w, h, 1.0, 0.0, 5.0);
        motion_blur(&mut [], 0, 0, 1.0, 0.0, 5.0);
    }
}
