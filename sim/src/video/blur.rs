//! Motion blur: a box kernel `length` pixels long along any direction, as a
//! running sum, so the cost per pixel does not depend on the blur length.
//!
//! A mostly-vertical direction (x moves `s = dx/dy` per row, |s| <= 1) is
//! blurred by shearing: row `y` of the source is shifted left by
//! `round(s * y)` (edges replicated), so the blur lines become columns; a
//! running sum down the columns (whole rows at a time, which vectorises) gives
//! every column's box sums, and each output row reads its own shifted window
//! back. A mostly-horizontal direction is transposed first and back after.
//! Rows above and below the frame repeat the edge rows, columns beyond its
//! sides the edge columns.

/// Reusable buffers for [`motion_blur`].
#[derive(Default)]
pub(crate) struct BlurScratch {
    a: Vec<u8>,
    b: Vec<u8>,
    acc: Vec<u16>,
}

/// Blur packed RGB8 `rgb` (`w` x `h`) along the unit direction (`dx`, `dy`)
/// by a box of `length` pixels. Too short a blur, a degenerate direction or a
/// buffer of the wrong size leaves `rgb` as it is.
pub(crate) fn motion_blur(rgb: &mut [u8], s: &mut BlurScratch, w: usize, h: usize, dx: f32, dy: f32, length: f32) {
    let n = w * h * 3;
    if w == 0 || h == 0 || rgb.len() != n || !(dx.is_finite() && dy.is_finite() && length.is_finite()) {
        return;
    }
    let major = dx.abs().max(dy.abs());
    if major <= 1e-6 {
        return;
    }
    let norm = (dx * dx + dy * dy).sqrt();
    // Steps of one pixel along the major axis that make up `length`.
    let taps = ((length * major / norm).round().clamp(0.0, 255.0)) as usize;
    if taps < 2 {
        return;
    }
    s.a.resize(n, 0);
    if dy.abs() > dx.abs() {
        s.a.copy_from_slice(rgb);
        sheared_column_blur(&s.a, rgb, &mut s.acc, w, h, dx / dy, taps);
    } else {
        s.b.resize(n, 0);
        transpose(rgb, &mut s.a, w, h);
        sheared_column_blur(&s.a, &mut s.b, &mut s.acc, h, w, dy / dx, taps);
        transpose(&s.b, rgb, h, w);
    }
}

/// `dst[x][y] = src[y][x]` for a `w` x `h` RGB8 image (dst is `h` x `w`),
/// in tiles so both sides stay in cache.
fn transpose(src: &[u8], dst: &mut [u8], w: usize, h: usize) {
    const T: usize = 32;
    if src.len() < w * h * 3 || dst.len() < w * h * 3 {
        return;
    }
    for by in (0..h).step_by(T) {
        for bx in (0..w).step_by(T) {
            for y in by..(by + T).min(h) {
                let row = &src[y * w * 3..(y + 1) * w * 3];
                for x in bx..(bx + T).min(w) {
                    let (i, o) = (x * 3, (x * h + y) * 3);
                    dst[o] = row[i];
                    dst[o + 1] = row[i + 1];
                    dst[o + 2] = row[i + 2];
                }
            }
        }
    }
}

/// Box-blur `src` (`w` x `h`) into `dst` along lines `x = x0 + round(slope * y)`
/// with `taps` rows per box.
fn sheared_column_blur(src: &[u8], dst: &mut [u8], acc: &mut Vec<u16>, w: usize, h: usize, slope: f32, taps: usize) {
    let off: Vec<i64> = (0..h).map(|y| (slope * y as f32).round() as i64).collect();
    let lo = off.iter().copied().min().unwrap_or(0);
    let hi = off.iter().copied().max().unwrap_or(0);
    // Sheared column ii holds, in row y, source pixel x = ii - hi + off[y].
    let wide = w + (hi - lo) as usize;
    acc.clear();
    acc.resize(wide * 3, 0);
    let row = |t: i64| t.clamp(0, h as i64 - 1) as usize;
    let before = taps as i64 / 2;
    for t in -before..taps as i64 - before {
        add_row(acc, src, w, row(t), hi - off[row(t)], true);
    }
    let inv = (1u64 << 32) / taps as u64;
    for y in 0..h {
        // Output row y reads columns from x - off[y] + hi.
        let start = ((hi - off[y]) as usize) * 3;
        if let (Some(out), Some(sums)) = (dst.get_mut(y * w * 3..(y + 1) * w * 3), acc.get(start..start + w * 3)) {
            for (o, &a) in out.iter_mut().zip(sums) {
                *o = ((u64::from(a) * inv + (1 << 31)) >> 32).min(255) as u8;
            }
        }
        let (enter, leave) = (row(y as i64 - before + taps as i64), row(y as i64 - before));
        add_row(acc, src, w, enter, hi - off[enter], true);
        add_row(acc, src, w, leave, hi - off[leave], false);
    }
}

/// Add (or subtract) source row `y`, placed at sheared column `at` and
/// extended by its edge pixels, to the accumulators.
fn add_row(acc: &mut [u16], src: &[u8], w: usize, y: usize, at: i64, add: bool) {
    let Some(line) = src.get(y * w * 3..(y + 1) * w * 3) else { return };
    let at = (at.max(0) as usize * 3).min(acc.len());
    let end = (at + w * 3).min(acc.len());
    let (head, rest) = acc.split_at_mut(at);
    let (mid, tail) = rest.split_at_mut(end - at);
    let first = [line[0], line[1], line[2]].map(u16::from);
    let last = [line[w * 3 - 3], line[w * 3 - 2], line[w * 3 - 1]].map(u16::from);
    let apply = |a: &mut u16, v: u16| *a = if add { a.wrapping_add(v) } else { a.wrapping_sub(v) };
    for px in head.chunks_exact_mut(3) {
        px.iter_mut().zip(first).for_each(|(a, v)| apply(a, v));
    }
    if add {
        mid.iter_mut().zip(line).for_each(|(a, &v)| *a = a.wrapping_add(u16::from(v)));
    } else {
        mid.iter_mut().zip(line).for_each(|(a, &v)| *a = a.wrapping_sub(u16::from(v)));
    }
    for px in tail.chunks_exact_mut(3) {
        px.iter_mut().zip(last).for_each(|(a, v)| apply(a, v));
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
        let mut s = BlurScratch::default();
        let d = std::f32::consts::FRAC_1_SQRT_2;
        for (dx, dy, dir) in [(1.0f32, 0.0f32, (1, 0)), (0.0, 1.0, (0, 1)), (d, d, (1, 1)), (-d, d, (-1, 1)), (d, -d, (1, -1))] {
            let mut f = frame(w, h);
            motion_blur(&mut f, &mut s, w, h, dx, dy, 10.0);
            let lit: Vec<(i64, i64)> = (0..w * h).filter(|i| f[i * 3] > 0).map(|i| ((i % w) as i64 - 32, (i / w) as i64 - 24)).collect();
            assert!(lit.len() >= 6, "{lit:?}");
            // Every lit pixel lies on the line through the centre.
            for (x, y) in &lit {
                assert_eq!(x * dir.1, y * dir.0, "{dx} {dy}: {lit:?}");
            }
            let total: u32 = f.iter().step_by(3).map(|&v| u32::from(v)).sum();
            assert!((230..=280).contains(&total), "{total}");
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_degenerate_input_is_harmless() {
        let (w, h) = (40, 30);
        let mut s = BlurScratch::default();
        let mut f = vec![77u8; w * h * 3];
        motion_blur(&mut f, &mut s, w, h, 0.3, -0.9, 25.0);
        motion_blur(&mut f, &mut s, w, h, 0.95, 0.3, 200.0);
        assert!(f.iter().all(|&v| v == 77));
        motion_blur(&mut f, &mut s, w, h, 0.0, 0.0, 25.0);
        motion_blur(&mut f, &mut s, w, h, f32::NAN, 1.0, f32::INFINITY);
        motion_blur(&mut f[..10], &mut s, w, h, 1.0, 0.0, 5.0);
        motion_blur(&mut [], &mut s, 0, 0, 1.0, 0.0, 5.0);
        motion_blur(&mut [1, 2, 3], &mut s, 1, 1, 0.0, 1.0, 50.0);
    }
}
