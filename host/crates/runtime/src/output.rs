//! Captured stdout and stderr, and the one output budget they share with the `log` import.
//!
//! A plugin that floods its output is refused at the cap, whichever way it writes: stdout,
//! stderr and log messages all draw from one [`OutputBudget`] per invocation. How a refusal
//! reaches the plugin depends on its language's runtime (Rust's `println!` panics on it), so
//! the budget itself records that it was exhausted, and the invocation is reported as stopped
//! by the output cap whatever the plugin did next.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The bytes of output an invocation may still produce, shared by stdout, stderr and log.
#[derive(Clone, Debug)]
pub(crate) struct OutputBudget {
    left: Arc<AtomicUsize>,
    hit: Arc<AtomicBool>,
}

impl OutputBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(bytes)),
            hit: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Takes `n` bytes, all or nothing; a refusal is remembered.
    pub(crate) fn take(&self, n: usize) -> bool {
        let taken = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok();
        if !taken {
            self.hit.store(true, Ordering::Relaxed);
        }
        taken
    }

    /// Bytes left.
    pub(crate) fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }

    /// Whether a write was refused for going past the budget.
    pub(crate) fn hit(&self) -> bool {
        self.hit.load(Ordering::Relaxed)
    }
}

/// One output stream of a plugin, drawing from the invocation's [`OutputBudget`].
#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: MemoryOutputPipe,
    budget: OutputBudget,
}

impl CappedPipe {
    pub(crate) fn new(budget: &OutputBudget) -> Self {
        Self {
            inner: MemoryOutputPipe::new(budget.left()),
            budget: budget.clone(),
        }
    }

    /// What the plugin wrote, up to the cap.
    pub(crate) fn contents(&self) -> Bytes {
        self.inner.contents()
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if !self.budget.take(bytes.len()) {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "output cap reached: stdout, stderr and log share one budget"
            )));
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        match self.budget.left() {
            0 => {
                self.budget.take(1);
                Err(StreamError::Closed)
            }
            left => Ok(left),
        }
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !self.budget.take(buf.len()) {
            return Poll::Ready(Err(std::io::Error::other("output cap reached")));
        }
        let mut inner = self.inner.clone();
        Poll::Ready(
            inner
                .write(Bytes::copy_from_slice(buf))
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_stderr_and_log_share_one_budget() {
        let budget = OutputBudget::new(10);
        let mut out = CappedPipe::new(&budget);
        let mut err = CappedPipe::new(&budget);
        out.write(Bytes::from_static(b"1234")).unwrap();
        err.write(Bytes::from_static(b"1234")).unwrap();
        assert!(!budget.hit());
        assert!(!budget.take(3), "the log finds 2 bytes left, not 3");
        assert!(budget.hit());
        assert!(out.write(Bytes::from_static(b"123")).is_err());
        assert!(budget.take(2));
        assert_eq!(budget.left(), 0);
        assert!(matches!(err.check_write(), Err(StreamError::Closed)));
        assert_eq!(&out.contents()[..], b"1234");
    }
}
