//! Camera picture faults for scenarios: a frame source wrapper that freezes
//! the picture, sends black frames, or sends frames whose buffer does not
//! match their declared size, as a failing camera head or capture card would.

use super::file::CameraFault;
use endotower_actors::video::capture::SourceFactory;
use endotower_actors::video::source::{FrameSource, SourceError, SourceFrame};
use std::sync::{Arc, Mutex};

/// The fault in force, shared by the runner and every (re)started source.
#[derive(Clone, Default)]
pub struct CameraFaultSwitch(Arc<Mutex<Option<CameraFault>>>);

impl CameraFaultSwitch {
    pub fn set(&self, fault: CameraFault) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (fault != CameraFault::None).then_some(fault);
    }
    fn get(&self) -> Option<CameraFault> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Faulty {
    inner: Box<dyn FrameSource>,
    switch: CameraFaultSwitch,
    last: Option<SourceFrame>,
}

impl FrameSource for Faulty {
    fn fps(&self) -> f64 {
        self.inner.fps()
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        let fault = self.switch.get();
        if fault == Some(CameraFault::Freeze) {
            if let Some(last) = &self.last {
                return Ok(Some(last.clone()));
            }
        }
        let Some(frame) = self.inner.next_frame()? else { return Ok(None) };
        let frame = match fault {
            Some(CameraFault::Black) => SourceFrame { rgb: Arc::new(vec![0; frame.rgb.len()]), ..frame },
            Some(CameraFault::WrongSize) => {
                // Half the rows arrive: the buffer is short for the declared size.
                let half = frame.rgb.len() / 2;
                SourceFrame { rgb: Arc::new(frame.rgb[..half].to_vec()), ..frame }
            }
            _ => frame,
        };
        self.last = Some(frame.clone());
        Ok(Some(frame))
    }
}

/// `inner`, with the faults of `switch` applied to every frame.
pub fn faulty_source(inner: SourceFactory, switch: CameraFaultSwitch) -> SourceFactory {
    Arc::new(move || -> Result<Box<dyn FrameSource>, SourceError> {
        Ok(Box::new(Faulty { inner: inner()?, switch: switch.clone(), last: None }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(u8);
    impl FrameSource for Counting {
        fn fps(&self) -> f64 {
            30.0
        }
        fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
            self.0 += 1;
            Ok(Some(SourceFrame { width: 2, height: 2, rgb: Arc::new(vec![self.0; 12]) }))
        }
    }

    #[test]
    fn each_fault_changes_the_frames_as_a_broken_camera_would() {
        let switch = CameraFaultSwitch::default();
        let f = faulty_source(Arc::new(|| Ok(Box::new(Counting(0)) as Box<dyn FrameSource>)), switch.clone());
        let mut s = f().unwrap();
        let mut next = || s.next_frame().unwrap().unwrap();
        assert_eq!(next().rgb[0], 1);
        switch.set(CameraFault::Freeze);
        assert_eq!((next().rgb[0], next().rgb[0]), (1, 1), "frozen on the last frame");
        switch.set(CameraFault::Black);
        assert!(next().rgb.iter().all(|&b| b == 0));
        switch.set(CameraFault::WrongSize);
        let f = next();
        assert_eq!((f.width, f.height, f.rgb.len()), (2, 2, 6), "buffer short for 2x2 RGB");
        switch.set(CameraFault::None);
        assert_eq!(next().rgb.len(), 12);
    }
}
