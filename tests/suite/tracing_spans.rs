//! With the `tracing` feature, resolution and registry writes open spans that
//! carry identifiers and never a value.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use connective::fixture::Fixture;
use connective::model::Param;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::support::spans::Capture;

/// The environment variable that makes [`spans_child`] run.
const SPANS_CHILD: &str = "CONNECTIVE_RESOLVE_SPANS_CHILD";

/// Runs [`spans_child`] in a process of its own (see
/// [`crate::support::child`]): beside the suite's other tests, even with the
/// interest cache rebuilt, the capture was sometimes left empty.
#[test]
fn resolve_and_write_spans_name_identifiers_never_values() {
    crate::support::child::run("tracing_spans::spans_child", SPANS_CHILD);
}

/// The scenario of the test above, in its own process (with
/// [`SPANS_CHILD`] set); does nothing otherwise.
#[test]
fn spans_child() {
    if !crate::support::child::is_child(SPANS_CHILD) {
        return;
    }
    let capture = Capture::default();
    let log = capture.0.clone();
    tracing::subscriber::with_default(capture, || {
        // Other tests of the suite run on other threads without a
        // subscriber: one registering a callsite while this one installs its
        // subscriber can leave the callsite's interest at "never". Rebuilt
        // now, with this subscriber registered, every callsite asks it.
        tracing::callsite::rebuild_interest_cache();
        let fx = Fixture::project("acme")
            .connection("twilio", |c| {
                c.param(Param::plain("ServiceURL").default("https://plain.example"))
                    .param(Param::secret("ApiKey").default("sk_live_traced_secret"))
            })
            .mappings("orders", |m| {
                m.by_name("twilio", [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_KEY")])
            })
            .build()
            .unwrap();
        fx.resolve_for("orders", "production", "globex").unwrap();
    });
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("span connective.write backend=\"memory\""), "{log}");
    assert!(log.contains("record 1 writes=3\nrecord 1 revision=1"), "{log}");
    assert!(
        log.contains("event message=committed key=connection twilio (project scope) of project acme"),
        "{log}"
    );
    assert!(
        log.contains("span connective.resolve project=acme integration=orders environment=production customer=\"globex\""),
        "{log}"
    );
    for value in ["sk_live_traced_secret", "https://plain.example"] {
        assert!(!log.contains(value), "a value reached tracing:\n{log}");
    }
}

/// The environment variable that makes [`readme_child`] run.
const README_CHILD: &str = "CONNECTIVE_README_SPANS_CHILD";

/// The README's tracing table names every span, event and field a host sees
/// (the scenario, [`readme_child`], in a process of its own).
#[test]
fn the_readme_lists_every_span_and_field() {
    crate::support::child::run("tracing_spans::readme_child", README_CHILD);
}

/// The scenario of the test above, in its own process (with
/// [`README_CHILD`] set); does nothing otherwise.
#[test]
fn readme_child() {
    if !crate::support::child::is_child(README_CHILD) {
        return;
    }
    let capture = Capture::default();
    let metas = capture.1.clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::with_default(EventMetas(capture, events.clone()), || {
        // See above: every callsite asks this subscriber.
        tracing::callsite::rebuild_interest_cache();
        let fx = Fixture::project("acme")
            .connection("twilio", |c| {
                c.param(Param::plain("ServiceURL").default("https://x.example"))
            })
            .mappings("orders", |m| m.by_name("twilio", [("ServiceURL", "SMS_URL")]))
            .build()
            .unwrap();
        fx.resolve_for("orders", "production", "globex").unwrap();
    });
    let readme = include_str!("../../README.md");
    let section = readme
        .split("**Tracing (feature `tracing`).**")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").nth(1))
        .expect("the README has a tracing table");
    let spans = metas.lock().unwrap().clone();
    let events = events.lock().unwrap().clone();
    assert!(!spans.is_empty() && !events.is_empty());
    let named = spans
        .iter()
        .map(|m| (m.name().to_owned(), *m))
        .chain(events.iter().cloned());
    for (name, meta) in named {
        assert!(
            section.contains(&format!("`{name}`")),
            "{name} is not in the README:\n{section}"
        );
        for field in meta.fields().iter().filter(|f| f.name() != "message") {
            assert!(
                section.contains(&format!("`{}`", field.name())),
                "field {} of {name} is not in the README:\n{section}",
                field.name()
            );
        }
    }
}

/// [`Capture`] that also keeps each event's message and metadata.
#[allow(clippy::type_complexity)]
struct EventMetas(Capture, Arc<Mutex<Vec<(String, &'static Metadata<'static>)>>>);

struct Message(String);
impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for EventMetas {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values)
    }
    fn record_follows_from(&self, a: &Id, b: &Id) {
        self.0.record_follows_from(a, b)
    }
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.1.lock().unwrap().push((message.0, event.metadata()));
        self.0.event(event)
    }
    fn enter(&self, id: &Id) {
        self.0.enter(id)
    }
    fn exit(&self, id: &Id) {
        self.0.exit(id)
    }
}
