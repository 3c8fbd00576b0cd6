//! A thread of the store's that runs beside fjall until the store drops it (the memtable reaper,
//! the trickle delete).

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running thread; dropping it stops the thread and waits for it.
pub(super) struct Background<T> {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<T>>,
}

/// What the thread waits on between rounds of work.
pub(super) struct Stop(Receiver<()>);

impl Stop {
    /// Sleeps for `wait`; false once the thread is to stop (at once, if it already is).
    pub fn sleep(&self, wait: Duration) -> bool {
        matches!(self.0.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
    }
}

impl<T: Send + 'static> Background<T> {
    /// Runs `body` on a thread called `name`; `body` returns once its [`Stop`] says so.
    pub fn spawn(name: &str, body: impl FnOnce(Stop) -> T + Send + 'static) -> std::io::Result<Background<T>> {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || body(Stop(stopped)))?;
        Ok(Background { stop: Some(stop), thread: Some(thread) })
    }

    /// Stops the thread and returns what it returned (`None` if it panicked or already stopped).
    pub fn stop(&mut self) -> Option<T> {
        drop(self.stop.take());
        self.thread.take().and_then(|thread| thread.join().ok())
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
