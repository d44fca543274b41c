//! V4L2 capture (cargo feature `v4l2`): a capture card or USB camera as the
//! live source. The device is asked for packed YUYV 4:2:2 at the configured
//! size and rate (what SDI/HDMI capture cards and UVC cameras deliver
//! uncompressed); the size and rate the driver actually grants are logged and
//! used. Frames are taken from 4 memory-mapped buffers and converted to RGB8
//! (BT.601, [`crate::ycbcr`]). A frame that does not arrive within two frame
//! intervals is reported as dropped, not as an error, so the capture stage
//! keeps its pace and the display shows the gap.

use crate::ycbcr::yuyv_to_rgb;
use endotower_actors::video::source::{FrameSource, SourceError, SourceFrame};
use std::sync::Arc;
use std::time::Duration;
use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, FourCC};

pub struct V4l2Source {
    path: String,
    width: u32,
    height: u32,
    stride: usize,
    fps: f64,
    // Declared before the device so it is dropped (streaming stopped, buffers
    // unmapped) first.
    stream: Stream<'static>,
    _device: Device,
}

impl V4l2Source {
    pub fn open(path: &str, width: u32, height: u32, fps: f64) -> Result<Self, SourceError> {
        let fail = |what: &str, e: std::io::Error| SourceError { source_name: path.to_string(), message: format!("{what}: {e}") };
        let device = Device::with_path(path).map_err(|e| fail("cannot open the device", e))?;
        let caps = device.query_caps().map_err(|e| fail("VIDIOC_QUERYCAP", e))?;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE | Flags::STREAMING) {
            return Err(SourceError {
                source_name: path.to_string(),
                message: format!("{} ({}) is not a streaming single-plane capture device", caps.card, caps.driver),
            });
        }
        let mut fmt = device.format().map_err(|e| fail("VIDIOC_G_FMT", e))?;
        fmt.width = width;
        fmt.height = height;
        fmt.fourcc = FourCC::new(b"YUYV");
        let fmt = device.set_format(&fmt).map_err(|e| fail("VIDIOC_S_FMT", e))?;
        if fmt.fourcc != FourCC::new(b"YUYV") {
            return Err(SourceError {
                source_name: path.to_string(),
                message: format!("the device offers {} but not YUYV at {width}x{height}; only YUYV is supported", fmt.fourcc),
            });
        }
        if (fmt.width, fmt.height) != (width, height) {
            tracing::warn!(device = path, asked = %format!("{width}x{height}"), granted = %format!("{}x{}", fmt.width, fmt.height), "V4L2 size adjusted by the driver");
        }
        let params = device.set_params(&Parameters::with_fps(fps.round().max(1.0) as u32)).map_err(|e| fail("VIDIOC_S_PARM", e))?;
        let granted = match params.interval {
            i if i.numerator > 0 && i.denominator > 0 => f64::from(i.denominator) / f64::from(i.numerator),
            _ => fps,
        };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, 4).map_err(|e| fail("VIDIOC_REQBUFS/mmap", e))?;
        stream.set_timeout(Duration::from_secs_f64(2.0 / granted));
        tracing::info!(device = path, card = %caps.card, driver = %caps.driver, width = fmt.width, height = fmt.height, fps = granted, "V4L2 capture opened");
        Ok(Self {
            path: path.to_string(),
            width: fmt.width,
            height: fmt.height,
            stride: fmt.stride as usize,
            fps: granted,
            stream,
            _device: device,
        })
    }
}

impl FrameSource for V4l2Source {
    fn fps(&self) -> f64 {
        self.fps
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        let (buf, _meta) = match self.stream.next() {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(None),
            Err(e) => return Err(SourceError { source_name: self.path.clone(), message: format!("VIDIOC_DQBUF: {e}") }),
        };
        let rgb = yuyv_to_rgb(buf, self.width, self.height, self.stride)
            .map_err(|e| SourceError { source_name: self.path.clone(), message: e.to_string() })?;
        Ok(Some(SourceFrame { width: self.width, height: self.height, rgb: Arc::new(rgb) }))
    }
}
