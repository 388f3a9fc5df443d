//! Runs a future to completion on the calling thread, parking it while the
//! future waits: how the blocking front door drives the write path, which is
//! written once as `async` code (see "Blocking and async" in the
//! [`registry`](crate::registry) module).
//!
//! No runtime is involved: a future driven here must not need one (the
//! blocking store calls it awaits are already complete when polled, and the
//! writer lock wakes its waiters itself).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// Wakes the thread that is blocked on the future.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` until it is ready, parking the thread in between.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake-up that came before this park makes it return at once;
        // a spurious one only polls again.
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_ready_future_completes_at_once() {
        assert_eq!(block_on(async { 7 }), 7);
    }

    #[test]
    fn a_future_woken_by_another_thread_completes() {
        let lock = Arc::new(async_lock::Mutex::new(0));
        let held = lock.try_lock().expect("free");
        let other = Arc::clone(&lock);
        let waiter = std::thread::spawn(move || {
            block_on(async move {
                let mut n = other.lock().await;
                *n += 1;
                *n
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the waiter did not wait for the lock");
        drop(held);
        assert_eq!(waiter.join().expect("waiter"), 1);
    }
}
