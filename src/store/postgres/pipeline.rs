//! Statements sent together, in one round trip. tokio-postgres hands a
//! request to its connection when the request's future is first polled, and
//! the connection writes requests in the order it gets them: futures polled
//! in order before any answer is awaited are pipelined, and the server runs
//! them in that order (each as its own extended-protocol exchange, so a
//! failure does not skip the ones after it: inside a transaction they fail
//! with "current transaction is aborted").
//!
//! Also the guard of a transaction begun by a statement of ours (so that the
//! `BEGIN` can travel with the statements after it), which rolls it back
//! when dropped before it ended, as tokio-postgres' own `Transaction` does.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use tokio_postgres::{Client, Error};

type Step<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// Statements pipelined on one connection, each with the context its
/// failure is reported under.
pub(super) struct Pipeline<'a> {
    steps: Vec<Slot<'a>>,
    /// How many of `steps` have been polled (their requests handed over).
    sent: usize,
}

struct Slot<'a> {
    what: &'static str,
    step: Step<'a>,
    /// The answer, once there.
    outcome: Option<Result<(), Error>>,
}

/// How one statement of a pipeline ended.
pub(super) struct Outcome {
    /// The context its failure is reported under.
    pub(super) what: &'static str,
    pub(super) result: Result<(), Error>,
}

impl<'a> Pipeline<'a> {
    pub(super) fn new() -> Self {
        Pipeline {
            steps: Vec::new(),
            sent: 0,
        }
    }

    /// How many statements it has.
    pub(super) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Adds a statement, sent at the next [`Pipeline::send`] after the ones
    /// added before it.
    pub(super) fn push(
        &mut self,
        what: &'static str,
        step: impl Future<Output = Result<(), Error>> + Send + 'a,
    ) {
        self.steps.push(Slot {
            what,
            step: Box::pin(step),
            outcome: None,
        });
    }

    /// Polls each statement not sent yet once, in order: each hands its
    /// request to the connection, or fails before sending it (a parameter
    /// the client cannot encode, a closed connection). Whether every
    /// statement so far is still without a failure.
    pub(super) async fn send(&mut self) -> bool {
        poll_fn(|cx| {
            for slot in &mut self.steps[self.sent..] {
                if let Poll::Ready(result) = slot.step.as_mut().poll(cx) {
                    slot.outcome = Some(result);
                }
            }
            self.sent = self.steps.len();
            Poll::Ready(())
        })
        .await;
        self.steps
            .iter()
            .all(|slot| !matches!(slot.outcome, Some(Err(_))))
    }

    /// Sends what is not sent yet, then awaits every answer: the outcomes
    /// in order.
    pub(super) async fn finish(mut self) -> Vec<Outcome> {
        self.send().await;
        poll_fn(|cx| {
            let mut pending = false;
            for slot in &mut self.steps {
                if slot.outcome.is_none() {
                    match slot.step.as_mut().poll(cx) {
                        Poll::Ready(result) => slot.outcome = Some(result),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending { Poll::Pending } else { Poll::Ready(()) }
        })
        .await;
        self.steps
            .into_iter()
            .map(|slot| Outcome {
                what: slot.what,
                // Every step answered above.
                result: slot.outcome.unwrap_or(Ok(())),
            })
            .collect()
    }
}

/// A transaction on `client` that a statement of ours began: rolled back
/// when dropped before [`Open::ended`] (a failure, a conflict, or the call
/// given up by its caller), so the connection goes back to the pool idle.
pub(super) struct Open<'a> {
    client: &'a Client,
    ended: bool,
}

impl<'a> Open<'a> {
    /// Guards the transaction a statement about to be sent on `client`
    /// begins.
    pub(super) fn new(client: &'a Client) -> Self {
        Open { client, ended: false }
    }

    /// The statement ending the transaction has been sent: nothing to roll
    /// back any more.
    pub(super) fn ended(&mut self) {
        self.ended = true;
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Polled once, the request is handed to the connection; its answer
        // is not awaited (it comes before any later statement's).
        let rollback = pin!(self.client.batch_execute("ROLLBACK"));
        let _ = rollback.poll(&mut Context::from_waker(Waker::noop()));
    }
}
