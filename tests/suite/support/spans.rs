//! A tracing subscriber that writes every span, field and event into one
//! log, for the tests that check what the crate traces.

use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// Writes every span name, field and event into one log.
#[derive(Clone, Default)]
pub struct Capture(
    pub Arc<Mutex<Vec<String>>>,
    pub Arc<Mutex<Vec<&'static Metadata<'static>>>>,
);

struct Fields<'a>(&'a mut String);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        let mut log = self.0.lock().unwrap();
        log.push(line);
        let mut metas = self.1.lock().unwrap();
        metas.push(span.metadata());
        Id::from_u64(metas.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut line = format!("record {}", span.into_u64());
        values.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = String::from("event");
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, id: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, id: &Id) {
        ENTERED.with(|e| {
            let mut entered = e.borrow_mut();
            if let Some(i) = entered.iter().rposition(|x| *x == id.into_u64()) {
                entered.remove(i);
            }
        });
    }
    /// The span this thread is in, so that `Span::current().record(..)`
    /// reaches it.
    fn current_span(&self) -> Current {
        match ENTERED.with(|e| e.borrow().last().copied()) {
            Some(id) => {
                let meta = self.1.lock().unwrap()[(id - 1) as usize];
                Current::new(Id::from_u64(id), meta)
            }
            None => Current::none(),
        }
    }
}

thread_local! {
    /// The spans this thread entered, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}
