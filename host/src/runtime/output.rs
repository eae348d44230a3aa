//! Captured, capped stdout and stderr that remember when they refused a write.
//!
//! A plugin that floods its output is refused at the cap. How the refusal reaches the plugin
//! depends on its language's runtime (Rust's `println!` panics on it), so the pipe itself
//! records that the cap was hit, and the invocation is reported as stopped by the output cap
//! whatever the plugin did next.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// One output stream of a plugin, capped at a number of bytes.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: MemoryOutputPipe,
    hit: Arc<AtomicBool>,
}

impl CappedPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: MemoryOutputPipe::new(capacity),
            hit: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What the plugin wrote, up to the cap.
    pub(crate) fn contents(&self) -> Bytes {
        self.inner.contents()
    }

    /// Whether a write was refused for going past the cap.
    pub(crate) fn cap_hit(&self) -> bool {
        self.hit.load(Ordering::Relaxed)
    }

    fn note<T>(&self, result: Result<T, StreamError>) -> Result<T, StreamError> {
        if result.is_err() {
            self.hit.store(true, Ordering::Relaxed);
        }
        result
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
        Box::new(self.inner.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let result = self.inner.write(bytes);
        self.note(result)
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let result = self.inner.check_write();
        self.note(result)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}
