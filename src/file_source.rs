//! Recordings as a source: a video file (MP4, MKV, ...: whatever the Debian
//! `ffmpeg` decodes, H.264 among them) decoded by an `ffmpeg` child process
//! into raw RGB frames on a pipe. The capture thread paces on the file's
//! frame rate; the pipe's back-pressure keeps the decoder just ahead of it.
//! Any size is passed through as it is (odd widths included).

use endotower_actors::video::source::{FrameSource, SourceError, SourceFrame};
use std::io::Read;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;

pub struct FileSource {
    path: String,
    width: u32,
    height: u32,
    fps: f64,
    looped: bool,
    decoder: Option<(Child, ChildStdout)>,
}

fn err(path: &str, message: impl Into<String>) -> SourceError {
    SourceError { source_name: path.to_string(), message: message.into() }
}

/// `num/den` as ffprobe writes a rate.
fn rate(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

impl FileSource {
    /// Probe `path` (size and frame rate of its first video stream) and start decoding.
    pub fn open(path: &str, looped: bool) -> Result<FileSource, SourceError> {
        if !std::path::Path::new(path).is_file() {
            return Err(err(path, "no such file"));
        }
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height,avg_frame_rate,r_frame_rate",
                "-of",
                "json",
            ])
            .arg(path)
            .output()
            .map_err(|e| err(path, format!("cannot run ffprobe (apt install ffmpeg): {e}")))?;
        if !out.status.success() {
            return Err(err(path, format!("ffprobe: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| err(path, format!("ffprobe output: {e}")))?;
        let s = v["streams"].get(0).ok_or_else(|| err(path, "no video stream"))?;
        let dim =
            |k: &str| s[k].as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| err(path, format!("video stream without `{k}`")));
        let (width, height) = (dim("width")?, dim("height")?);
        let fps = ["avg_frame_rate", "r_frame_rate"]
            .iter()
            .find_map(|k| s[*k].as_str().and_then(rate))
            .filter(|f| (1.0..=240.0).contains(f))
            .ok_or_else(|| err(path, format!("no usable frame rate in {s}")))?;
        let mut f = FileSource { path: path.to_string(), width, height, fps, looped, decoder: None };
        f.start()?;
        Ok(f)
    }

    fn start(&mut self) -> Result<(), SourceError> {
        self.stop();
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(&self.path)
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(&self.path, format!("cannot run ffmpeg (apt install ffmpeg): {e}")))?;
        let out = child.stdout.take().ok_or_else(|| err(&self.path, "ffmpeg without stdout"))?;
        self.decoder = Some((child, out));
        Ok(())
    }

    fn stop(&mut self) {
        if let Some((mut child, _)) = self.decoder.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The next frame's bytes, or `None` at the end of the file.
    fn read_frame(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        let len = self.width as usize * self.height as usize * 3;
        let Some((_, out)) = self.decoder.as_mut() else { return Ok(None) };
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match out.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(&self.path, format!("reading the decoder: {e}"))),
            }
        }
        match got {
            0 => Ok(None),
            n if n == len => Ok(Some(buf)),
            n => Err(err(&self.path, format!("truncated frame: {n} of {len} bytes"))),
        }
    }
}

impl FrameSource for FileSource {
    fn fps(&self) -> f64 {
        self.fps
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        let mut frame = self.read_frame()?;
        if frame.is_none() && self.looped {
            self.start()?;
            frame = self.read_frame()?;
        }
        match frame {
            Some(rgb) => Ok(Some(SourceFrame { width: self.width, height: self.height, rgb: Arc::new(rgb) })),
            None => {
                self.stop();
                Err(err(&self.path, "end of file"))
            }
        }
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn frame_rates_as_ffprobe_writes_them() {
        assert_eq!(rate("30/1"), Some(30.0));
        assert!((rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(rate("0/0"), None);
        assert_eq!(rate("25"), Some(25.0));
    }
}
