//! Raw YUV4MPEG2 (`.y4m`) video, so any recording plays through the tower
//! (`ffmpeg -i in.mp4 -pix_fmt yuv420p out.y4m`). 8-bit 4:2:0 (all siting
//! variants), 4:2:2, 4:4:4 and mono, converted to RGB8 with BT.601
//! limited-range coefficients. Malformed input gives an error naming the
//! byte offset and what was expected; nothing panics on garbage.

use crate::ycbcr::to_rgb;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Y4mError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("byte {offset}: {message}")]
    Format { offset: u64, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chroma {
    C420,
    C422,
    C444,
    Mono,
}

pub struct Y4mReader<R> {
    src: BufReader<R>,
    width: u32,
    height: u32,
    fps: f64,
    chroma: Chroma,
    data_start: u64,
    offset: u64,
    index: u64,
}

fn fmt(offset: u64, message: impl Into<String>) -> Y4mError {
    Y4mError::Format { offset, message: message.into() }
}

impl Y4mReader<std::fs::File> {
    pub fn open(path: &str) -> Result<Self, Y4mError> {
        let f = std::fs::File::open(path).map_err(|source| Y4mError::Io { path: path.to_string(), source })?;
        Self::new(f)
    }
}

impl<R: Read> Y4mReader<R> {
    pub fn new(r: R) -> Result<Self, Y4mError> {
        let mut src = BufReader::new(r);
        let mut header = Vec::new();
        src.by_ref().take(4096).read_until(b'\n', &mut header).map_err(|e| fmt(0, e.to_string()))?;
        if !header.starts_with(b"YUV4MPEG2 ") {
            return Err(fmt(0, "not a YUV4MPEG2 file (the first 10 bytes must be \"YUV4MPEG2 \")"));
        }
        if header.last() != Some(&b'\n') {
            return Err(fmt(header.len() as u64, "stream header has no end of line within 4096 bytes"));
        }
        let text = String::from_utf8_lossy(&header[10..header.len() - 1]).into_owned();
        let (mut width, mut height, mut fps, mut chroma) = (None, None, 25.0, Chroma::C420);
        let mut pos = 10u64;
        for tag in text.split(' ') {
            let bad = |m: String| fmt(pos, m);
            match tag.as_bytes().first() {
                Some(b'W') => width = Some(tag[1..].parse::<u32>().map_err(|_| bad(format!("bad width tag {tag:?}")))?),
                Some(b'H') => height = Some(tag[1..].parse::<u32>().map_err(|_| bad(format!("bad height tag {tag:?}")))?),
                Some(b'F') => {
                    let (n, d) = tag[1..].split_once(':').ok_or_else(|| bad(format!("bad frame-rate tag {tag:?}, expected Fnum:den")))?;
                    let (n, d): (f64, f64) = (
                        n.parse().map_err(|_| bad(format!("bad frame-rate tag {tag:?}")))?,
                        d.parse().map_err(|_| bad(format!("bad frame-rate tag {tag:?}")))?,
                    );
                    if !(n > 0.0 && d > 0.0) {
                        return Err(bad(format!("frame rate {tag:?} must be positive")));
                    }
                    fps = n / d;
                }
                Some(b'C') => {
                    chroma = match &tag[1..] {
                        "420jpeg" | "420" | "420paldv" | "420mpeg2" => Chroma::C420,
                        "422" => Chroma::C422,
                        "444" => Chroma::C444,
                        "mono" => Chroma::Mono,
                        other => {
                            return Err(bad(format!("unsupported colour space C{other} (8-bit 420*, 422, 444 and mono are supported)")))
                        }
                    }
                }
                _ => {} // I, A, X and empty tags do not matter here
            }
            pos += tag.len() as u64 + 1;
        }
        let width = width.ok_or_else(|| fmt(10, "stream header has no W (width) tag"))?;
        let height = height.ok_or_else(|| fmt(10, "stream header has no H (height) tag"))?;
        if !(2..=8192).contains(&width) || !(2..=8192).contains(&height) {
            return Err(fmt(10, format!("frame size {width}x{height} outside 2..=8192")));
        }
        let start = header.len() as u64;
        Ok(Y4mReader { src, width, height, fps, chroma, data_start: start, offset: start, index: 0 })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn fps(&self) -> f64 {
        self.fps
    }

    fn plane_sizes(&self) -> (usize, usize, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = match self.chroma {
            Chroma::C420 => (w.div_ceil(2), h.div_ceil(2)),
            Chroma::C422 => (w.div_ceil(2), h),
            Chroma::C444 => (w, h),
            Chroma::Mono => (0, 0),
        };
        (w * h, cw, ch)
    }

    /// The next frame as packed RGB8; `Ok(None)` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Arc<Vec<u8>>>, Y4mError> {
        let mut line = Vec::new();
        let n = self.src.by_ref().take(1024).read_until(b'\n', &mut line).map_err(|e| fmt(self.offset, e.to_string()))?;
        if n == 0 {
            return Ok(None);
        }
        if !line.starts_with(b"FRAME") || line.last() != Some(&b'\n') {
            return Err(fmt(self.offset, format!("frame {} header is not \"FRAME\"", self.index)));
        }
        self.offset += n as u64;
        let (ysize, cw, ch) = self.plane_sizes();
        let total = ysize + 2 * cw * ch;
        let mut buf = vec![0u8; total];
        let mut got = 0;
        while got < total {
            match self.src.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(fmt(
                        self.offset + got as u64,
                        format!("frame {} truncated: expected {total} bytes of pixels, got {got}", self.index),
                    ))
                }
                Ok(k) => got += k,
                Err(e) => return Err(fmt(self.offset + got as u64, e.to_string())),
            }
        }
        self.offset += total as u64;
        self.index += 1;
        let (w, h) = (self.width as usize, self.height as usize);
        let (yp, rest) = buf.split_at(ysize);
        let (cb, cr) = rest.split_at(cw * ch);
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let cy = match self.chroma {
                Chroma::C420 => y / 2,
                _ => y,
            };
            for x in 0..w {
                let cx = match self.chroma {
                    Chroma::C420 | Chroma::C422 => x / 2,
                    _ => x,
                };
                let (u, v) = if self.chroma == Chroma::Mono { (128, 128) } else { (cb[cy * cw + cx], cr[cy * cw + cx]) };
                rgb.extend_from_slice(&to_rgb(yp[y * w + x], u, v));
            }
        }
        Ok(Some(Arc::new(rgb)))
    }
}

impl<R: Read + Seek> Y4mReader<R> {
    /// Back to the first frame (looping playback).
    pub fn rewind(&mut self) -> Result<(), Y4mError> {
        self.src.seek(SeekFrom::Start(self.data_start)).map_err(|e| fmt(self.data_start, e.to_string()))?;
        self.offset = self.data_start;
        Ok(())
    }
}

/// Write RGB8 frames as 4:4:4 Y4M (BT.601 limited range).
pub struct Y4mWriter<W: Write> {
    out: W,
    width: u32,
    height: u32,
}

impl<W: Write> Y4mWriter<W> {
    pub fn new(mut out: W, width: u32, height: u32, fps: u32) -> std::io::Result<Self> {
        writeln!(out, "YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C444")?;
        Ok(Self { out, width, height })
    }

    pub fn write_frame(&mut self, rgb: &[u8]) -> std::io::Result<()> {
        let n = (self.width * self.height) as usize;
        if rgb.len() != n * 3 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("frame has {} bytes, expected {}", rgb.len(), n * 3),
            ));
        }
        let mut planes = vec![0u8; n * 3];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            planes[i] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
            planes[n + i] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
            planes[2 * n + i] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
        }
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(&planes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frames_written_then_read_back_match_within_conversion_rounding() {
        let (w, h) = (16u32, 8u32);
        let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        let mut bytes = Vec::new();
        let mut wr = Y4mWriter::new(&mut bytes, w, h, 30).unwrap();
        wr.write_frame(&frame).unwrap();
        wr.write_frame(&frame).unwrap();
        let mut r = Y4mReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!((r.width(), r.height(), r.fps()), (16, 8, 30.0));
        for _ in 0..2 {
            let got = r.next_frame().unwrap().unwrap();
            let worst = got.iter().zip(&frame).map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs()).max().unwrap();
            assert!(worst <= 4, "worst channel error {worst}");
        }
        assert!(r.next_frame().unwrap().is_none());
        r.rewind().unwrap();
        assert!(r.next_frame().unwrap().is_some(), "rewind plays again");
    }

    #[test]
    fn a_420_file_reads_with_shared_chroma() {
        let mut bytes = b"YUV4MPEG2 W4 H2 F25:1 C420jpeg\nFRAME\n".to_vec();
        bytes.extend_from_slice(&[16, 16, 235, 235, 16, 16, 235, 235]); // Y
        bytes.extend_from_slice(&[128, 128, 128, 128]); // Cb, Cr (2x1 each)
        let mut r = Y4mReader::new(Cursor::new(bytes)).unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(&f[0..3], &[0, 0, 0]);
        assert_eq!(&f[6..9], &[255, 255, 255]);
    }

    #[test]
    fn malformed_input_names_the_byte_and_never_panics() {
        let e = Y4mReader::new(Cursor::new(b"RIFF....".to_vec())).err().unwrap();
        assert!(e.to_string().starts_with("byte 0:"), "{e}");
        let e = Y4mReader::new(Cursor::new(b"YUV4MPEG2 W4 F25:1\n".to_vec())).err().unwrap();
        assert!(e.to_string().contains("no H"), "{e}");
        let e = Y4mReader::new(Cursor::new(b"YUV4MPEG2 W4 H2 C420p10\n".to_vec())).err().unwrap();
        assert!(e.to_string().contains("C420p10"), "{e}");
        let mut r = Y4mReader::new(Cursor::new(b"YUV4MPEG2 W4 H2 C444\nFRAME\n\x10\x10".to_vec())).unwrap();
        let e = r.next_frame().unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("expected 24 bytes"), "{e}");
        // Random garbage after a valid header.
        let mut seed = 12345u32;
        for _ in 0..200 {
            let mut g = b"YUV4MPEG2 W3 H3 C420\n".to_vec();
            for _ in 0..40 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                g.push((seed >> 16) as u8);
            }
            let mut r = Y4mReader::new(Cursor::new(g)).unwrap();
            while let Ok(Some(_)) = r.next_frame() {}
        }
    }
}
