//! Serial ports for the RTU buses: opening a path, and taking over a stream
//! the caller created so it is driven by the simulator's own runtime.

use std::io;

use tokio_serial::SerialStream;

/// Open `path` at `baud` (must run inside the simulator's runtime).
pub(crate) fn open(path: &str, baud: u32) -> io::Result<SerialStream> {
    SerialStream::open(&tokio_serial::new(path, baud)).map_err(io::Error::from)
}

/// Re-register `stream` with the current (simulator) runtime.
///
/// A `SerialStream` is bound to the reactor of the runtime that created it;
/// serving it from the simulator thread would make the simulator depend on the
/// caller's runtime staying alive and idle. Instead the file descriptor is
/// duplicated and wrapped anew here, and the caller's registration dropped.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn adopt(stream: SerialStream) -> io::Result<SerialStream> {
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};

    // SAFETY: the descriptor belongs to `stream`, which is alive until after the dup.
    let owned = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()?;
    drop(stream);
    // SAFETY: `owned` is an open descriptor whose ownership moves into the port.
    let port = unsafe { serialport::TTYPort::from_raw_fd(owned.into_raw_fd()) };
    SerialStream::try_from(port).map_err(io::Error::from)
}

/// Non-unix: the stream is served as it is.
#[cfg(not(unix))]
pub(crate) fn adopt(stream: SerialStream) -> io::Result<SerialStream> {
    Ok(stream)
}
