//! The `LinkDrop` fault on TCP: a gate shared by all connections of a device
//! that, when cut, ends every open connection and refuses new ones.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Whether a device's TCP links are up; cutting cancels the current token.
#[derive(Debug, Default)]
pub(crate) struct LinkGate {
    token: Mutex<CancellationToken>,
}

impl LinkGate {
    fn token(&self) -> std::sync::MutexGuard<'_, CancellationToken> {
        self.token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Close every connection admitted so far and refuse new ones.
    pub(crate) fn cut(&self) {
        self.token().cancel();
    }

    /// Accept connections again.
    pub(crate) fn restore(&self) {
        let mut token = self.token();
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
    }

    /// A token for a new connection, or `None` while the link is cut.
    pub(crate) fn admit(&self) -> Option<CancellationToken> {
        let token = self.token().clone();
        (!token.is_cancelled()).then_some(token)
    }
}

/// A transport that reads end-of-stream (and fails writes) once its link is cut.
pub(crate) struct LinkStream<S> {
    inner: S,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    is_cut: bool,
}

impl<S> LinkStream<S> {
    pub(crate) fn new(inner: S, token: CancellationToken) -> Self {
        Self { inner, cut: Box::pin(token.cancelled_owned()), is_cut: false }
    }

    /// Has the link been cut? Registers `cx` to be woken when it is.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_cut && self.cut.as_mut().poll(cx).is_ready() {
            self.is_cut = true;
        }
        self.is_cut
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LinkStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LinkStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
