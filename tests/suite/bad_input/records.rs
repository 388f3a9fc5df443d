//! Every stored record kind, sent as JSON with hostile edits (huge and
//! negative numbers, control characters, unicode separators, long text,
//! nesting, repeated entries, dropped or swapped fields): deserializing gives
//! a record or an error, never a panic; a record accepted this way writes
//! back and reads back unchanged, and a registry holding it (in place of
//! the sample of its kind) resolves, explains, lists, writes every output
//! and exports without a panic.

use std::sync::Arc;

use connective::model::{PlaintextCodec, ProjectId, Record, with_secret_codec};
use connective::test_kit;
use proptest::prelude::*;
use serde_json::{Value, json};

fn samples() -> Vec<Value> {
    let p: ProjectId = "acme".parse().unwrap();
    let records = [
        test_kit::secret_rich_connection(&p, "crm", &["s1", "s2", "s3", "s4", "s5"]),
        test_kit::sample_connection(&p, "twilio", "s"),
        test_kit::sample_mappings(&p, "orders", "twilio"),
        test_kit::sample_oauth_app(&p, "client-secret"),
        test_kit::sample_token_set(&p, "access", Some("refresh")),
        test_kit::sample_pending_authorization(&p, &"v".repeat(43)),
        test_kit::sample_status(&p),
        test_kit::sample_connection_type(&p),
        test_kit::sample_template(&p, "tsecret"),
    ];
    records
        .iter()
        .map(|r| serde_json::from_str(&test_kit::record_json(r)).unwrap())
        .collect()
}

fn codec<R>(f: impl FnOnce() -> R) -> R {
    with_secret_codec(Arc::new(PlaintextCodec), f)
}

/// The values an attacker puts in place of a node.
fn hostile(pick: usize, seed: &str) -> Value {
    match pick % 24 {
        0 => json!(u64::MAX),
        1 => json!(i64::MIN),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(1e308),
        5 => json!(-0.5),
        6 => json!(""),
        7 => json!("x".repeat(70_000)),
        8 => json!("a\nB=1"),
        9 => json!("a\u{0}b"),
        10 => json!("a\u{2028}b"),
        11 => json!("NaN"),
        12 => json!("18446744073709551616"),
        13 => json!(null),
        14 => json!(true),
        15 => json!([]),
        16 => json!({}),
        17 => serde_json::from_str(&format!("{}{}", "[".repeat(100), "]".repeat(100))).unwrap(),
        18 => json!(seed),
        19 => json!(i64::MAX),
        20 => json!(u32::MAX as u64 + 1),
        21 => json!(65_536),
        22 => json!("é".repeat(40)),
        _ => json!(-9_223_372_036_854_775_807i64),
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`-th node of `v` in pre-order.
fn nth(v: &mut Value, n: usize) -> &mut Value {
    if n == 0 {
        return v;
    }
    let mut skip = n - 1;
    let children: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => unreachable!("a leaf has no node {n}"),
    };
    for child in children {
        let size = count(child);
        if skip < size {
            return nth(child, skip);
        }
        skip -= size;
    }
    unreachable!("node {n} is past the end")
}

fn mutate(root: &mut Value, at: prop::sample::Index, how: usize, seed: &str) {
    let node = nth(root, at.index(count(root)));
    match how % 5 {
        0 | 1 => *node = hostile(how / 5, seed),
        2 => {
            if let Value::Array(a) = node
                && let Some(first) = a.first().cloned()
            {
                a.push(first);
            } else if let Value::Object(o) = node
                && let Some(k) = o.keys().next().cloned()
            {
                o.remove(&k);
            }
        }
        3 => {
            if let Value::Object(o) = node {
                let keys: Vec<String> = o.keys().cloned().collect();
                if keys.len() >= 2 {
                    let a = o.remove(&keys[0]).unwrap();
                    let b = o.remove(&keys[1]).unwrap();
                    o.insert(keys[0].clone(), b);
                    o.insert(keys[1].clone(), a);
                }
            } else if let Value::Array(a) = node {
                a.reverse();
            }
        }
        _ => {
            if let Value::Number(num) = node {
                if let Some(i) = num.as_i64() {
                    *node = json!(i.wrapping_neg().wrapping_sub(1));
                }
            } else if let Value::String(s) = node {
                *node = json!(format!("{s}{seed}"));
            }
        }
    }
}

/// A registry on a store holding every sample, `record` in place of the
/// sample of its kind; everything a host reads from it is computed.
fn world(which: usize, record: Record) {
    use connective::manifest::{ExportOptions, Format, Manifest, export};
    use connective::output::{Dialect, EnvReport, Secrets, kubernetes, to_dotenv_as};
    use connective::prelude::*;
    use connective::store::{Batch, Expect, MemoryStore, Store, Write};
    let mut records: Vec<Record> = samples()
        .into_iter()
        .map(|v| codec(|| serde_json::from_value::<Record>(v)).unwrap())
        .collect();
    records[which] = record;
    let store = MemoryStore::new();
    let mut batch = Batch::new();
    let mut keys = std::collections::HashSet::new();
    for r in records {
        if keys.insert(r.key()) {
            batch.push(Write::put(r, Expect::Absent));
        }
    }
    if store.commit(&batch).is_err() {
        return;
    }
    let Ok(registry) = Registry::builder().store(store).build() else {
        return;
    };
    for project in ["acme"] {
        let project: ProjectId = project.parse().unwrap();
        for integration in ["orders", "crm-sync", "other"] {
            for environment in ["production", "development", "test"] {
                for customer in [None, Some("customer3"), Some("customer4"), Some("globex")] {
                    let mut request =
                        ResolveRequest::parse(project.as_str(), integration, environment).unwrap();
                    if let Some(c) = customer {
                        request = request.for_customer(c).unwrap();
                    }
                    let Ok(env) = registry.resolve(&request) else {
                        continue;
                    };
                    for d in Dialect::ALL {
                        let _ = to_dotenv_as(&env, d);
                    }
                    let _ =
                        kubernetes::to_kubernetes(&env, &kubernetes::KubernetesOptions::new("x").unwrap());
                    let _ = serde_json::to_string(&EnvReport::new(&env, Secrets::Expose));
                    for var in &env {
                        let _ = registry.explain(&request, var.name().as_str());
                    }
                }
            }
        }
        for viewer in [
            connective::model::Viewer::Organization,
            connective::model::Viewer::Program,
            connective::model::Viewer::Customer("customer3".parse().unwrap()),
        ] {
            let _ = registry.listings(&project, &viewer, &"production".parse().unwrap());
        }
        if let Ok(doc) = export(&registry, &project, &ExportOptions::keep()) {
            for f in [Format::Yaml, Format::Toml, Format::Json] {
                if let Ok(text) = doc.to_text(f) {
                    // A mapping left dangling (a forced delete, or an edit
                    // here) is exported as it is, and refused on load.
                    let _ = Manifest::parse(&text, f, "export");
                }
            }
        }
    }
}

fn check(which: usize, mut value: Value, edits: Vec<(prop::sample::Index, usize, String)>) {
    for (at, how, seed) in &edits {
        mutate(&mut value, *at, *how, seed);
    }
    let text = value.to_string();
    let parsed = codec(|| serde_json::from_str::<Record>(&text));
    if let Ok(record) = parsed {
        let written = codec(|| serde_json::to_string(&record))
            .unwrap_or_else(|e| panic!("accepted but cannot be written: {e}\n{text}"));
        let back = codec(|| serde_json::from_str::<Record>(&written))
            .unwrap_or_else(|e| panic!("written but cannot be read back: {e}\n{written}\nfrom {text}"));
        assert!(
            test_kit::same_record(&record, &back),
            "changed on the way back: {text}"
        );
        let _ = format!("{record:?} {}", record.key());
        world(which, record);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_edits_of_stored_records_never_panic_and_round_trip(
        which in 0usize..9,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..200, "[a-zA-Z0-9 _.:/-]{0,6}"), 1..4),
    ) {
        check(which, samples().swap_remove(which), edits);
    }
}
