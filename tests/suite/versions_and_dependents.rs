//! Rules 8 and 9: no lost updates, no dangling references.
//!
//! Every record has a version and every write names the version it read; a
//! batch commits whole or not at all. A connection that integrations use is
//! not deleted or renamed from under them unless the caller insists.

use connective::model::{ConnectionRef, RecordKey, Revision};
use connective::prelude::*;
use connective::resolve::Problem;
use connective::store::Expect;

use crate::support::acme;

fn orders() -> IntegrationId {
    "orders".parse().unwrap()
}

fn twilio(url: &str) -> ConnectionSpec {
    named("twilio", url)
}

fn named(name: &str, url: &str) -> ConnectionSpec {
    ConnectionSpec::project("acme", name)
        .target(Target::external("twilio"))
        .param(Param::plain("ServiceURL").default(url))
        .build()
        .unwrap()
}

fn url_of(registry: &Registry, id: ConnectionId) -> String {
    let c = registry.connection(&acme(), id).unwrap();
    match c.value.spec().param("ServiceURL").unwrap().values() {
        connective::model::ParamValues::Plain(layers) => {
            layers.get(&connective::model::Layer::Default).unwrap().to_owned()
        }
        other => panic!("{other:?}"),
    }
}

fn version(registry: &Registry, id: ConnectionId) -> Version {
    registry.connection(&acme(), id).unwrap().version
}

fn map_by_name(registry: &Registry, integration: &str, name: &str) {
    registry
        .set_mappings(
            Mappings::of("acme", integration)
                .by_name(name, [("ServiceURL", "URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
}

fn map_by_id(registry: &Registry, integration: &str, id: ConnectionId) {
    registry
        .set_mappings(
            Mappings::of("acme", integration)
                .by_id(id, [("ServiceURL", "URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
}

fn still_used(err: RegistryError) -> Vec<IntegrationId> {
    match err {
        RegistryError::StillUsed { dependents, .. } => dependents,
        other => panic!("expected StillUsed, got {other}"),
    }
}

/// Everything a registry holds, comparable.
fn state(registry: &Registry) -> (Revision, Vec<String>) {
    let mut out: Vec<String> = registry
        .store()
        .load()
        .unwrap()
        .records
        .iter()
        .map(|(v, r)| format!("{} {v}", r.key()))
        .collect();
    out.sort();
    (registry.catalog().revision(), out)
}

#[test]
fn every_write_bumps_the_version_and_a_stale_write_is_a_conflict() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(twilio("https://v1")).unwrap();
    assert_eq!(version(&registry, id), Version(1));

    registry
        .update_connection(id, Version(1), twilio("https://v2"))
        .unwrap();
    assert_eq!(version(&registry, id), Version(2));

    // A second writer that also read version 1 loses, and overwrites nothing.
    let err = registry
        .update_connection(id, Version(1), twilio("https://lost-update"))
        .unwrap_err();
    assert!(err.is_retryable());
    match &err {
        RegistryError::Conflict { key, expected, found } => {
            assert_eq!(
                key,
                &RecordKey::Connection(acme(), Scope::Project, "twilio".parse().unwrap())
            );
            assert_eq!(*expected, Expect::Version(Version(1)));
            assert_eq!(*found, Some(Version(2)));
        }
        other => panic!("expected Conflict, got {other}"),
    }
    assert!(
        err.to_string().contains("expected version v1, found version v2"),
        "{err}"
    );
    assert_eq!(url_of(&registry, id), "https://v2");

    // Deleting with a stale version is a conflict too.
    let err = registry
        .delete_connection(&acme(), id, Version(1), DeleteMode::Force)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Conflict { .. }), "{err}");
    assert!(registry.connection(&acme(), id).is_some());

    registry
        .delete_connection(&acme(), id, Version(2), DeleteMode::Refuse)
        .unwrap();
    assert!(registry.connection(&acme(), id).is_none());
    let err = registry
        .update_connection(id, Version(2), twilio("https://v3"))
        .unwrap_err();
    assert!(matches!(err, RegistryError::ConnectionNotFound { .. }), "{err}");
    assert!(!err.is_retryable());
}

#[test]
fn mappings_are_versioned_like_connections() {
    let registry = Registry::in_memory();
    registry.create_connection(twilio("https://a")).unwrap();
    map_by_name(&registry, "orders", "twilio");
    let key = RecordKey::Mappings(acme(), orders());
    let v1 = registry.mappings(&acme(), &orders()).unwrap().version;
    assert_eq!(v1, Version(1));

    // "I read that there are none" while there are: a conflict.
    let again = Mappings::of("acme", "orders")
        .by_name_defaults("twilio")
        .build()
        .unwrap();
    match registry.set_mappings(again.clone(), None).unwrap_err() {
        RegistryError::Conflict {
            key: k,
            expected,
            found,
        } => {
            assert_eq!(k, key);
            assert_eq!(expected, Expect::Absent);
            assert_eq!(found, Some(v1));
        }
        other => panic!("expected Conflict, got {other}"),
    }
    registry.set_mappings(again.clone(), Some(v1)).unwrap();
    assert!(matches!(
        registry.set_mappings(again, Some(v1)),
        Err(RegistryError::Conflict { .. })
    ));
    assert_eq!(registry.mappings(&acme(), &orders()).unwrap().version, Version(2));
}

#[test]
fn versions_never_repeat_across_delete_and_re_create() {
    let registry = Registry::in_memory();
    registry.create_connection(twilio("https://a")).unwrap();
    map_by_name(&registry, "orders", "twilio");
    registry
        .write(|tx| tx.delete_mappings(&acme(), &orders(), Version(1)))
        .unwrap();
    assert!(registry.mappings(&acme(), &orders()).is_none());
    map_by_name(&registry, "orders", "twilio");
    let recreated = registry.mappings(&acme(), &orders()).unwrap().version;
    assert!(recreated > Version(1), "re-created mappings reuse {recreated}");
    // The catalog reports the version the store holds.
    let (stored, _) = registry
        .store()
        .get(&RecordKey::Mappings(acme(), orders()))
        .unwrap()
        .unwrap();
    assert_eq!(stored, recreated);
    // A writer holding the old incarnation's version cannot overwrite the new.
    let m = Mappings::of("acme", "orders")
        .by_name_defaults("twilio")
        .build()
        .unwrap();
    assert!(matches!(
        registry.set_mappings(m, Some(Version(1))),
        Err(RegistryError::Conflict { .. })
    ));
}

#[test]
fn a_batch_commits_whole_as_one_revision() {
    let registry = Registry::in_memory();
    let before = registry.catalog().revision();
    let ((a, b), report) = registry
        .write(|tx| {
            let a = tx.create_connection(named("twilio", "https://a"))?;
            let b = tx.create_connection(named("stripe", "https://b"))?;
            // The batch sees its own writes: the new connections can be mapped.
            tx.set_mappings(
                Mappings::of("acme", "orders")
                    .by_id(a, [("ServiceURL", "SMS_URL")])
                    .by_name("stripe", [("ServiceURL", "PAY_URL")])
                    .build()?,
                None,
            )?;
            Ok((a, b))
        })
        .unwrap();
    assert_eq!(report.created, vec![a, b]);
    assert_eq!(report.revision.0, before.0 + 1, "one batch, one revision");
    assert_eq!(registry.catalog().revision(), report.revision);
    let env = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(env.len(), 2);
}

#[test]
fn a_batch_with_one_failing_write_stores_nothing() {
    let registry = Registry::in_memory();
    let (a, _) = registry.create_connection(named("twilio", "https://a")).unwrap();
    registry
        .update_connection(a, Version(1), named("twilio", "https://a2"))
        .unwrap();
    let before = state(&registry);

    // A stale version in the middle of the batch.
    let err = registry
        .write(|tx| {
            tx.create_connection(named("stripe", "https://b"))?;
            tx.update_connection(a, Version(1), named("twilio", "https://stale"))?;
            tx.create_connection(named("sendgrid", "https://c"))
        })
        .unwrap_err();
    assert!(matches!(err, RegistryError::Conflict { .. }), "{err}");
    assert_eq!(state(&registry), before);
    assert_eq!(url_of(&registry, a), "https://a2");

    // A refused step at the end undoes the earlier ones.
    let err = registry
        .write(|tx| {
            tx.create_connection(named("stripe", "https://b"))?;
            tx.update_connection(a, Version(2), named("twilio", "https://a3"))?;
            tx.set_mappings(
                Mappings::of("acme", "orders")
                    .by_name("nowhere", [("X", "X")])
                    .build()?,
                None,
            )
        })
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidMappings { .. }), "{err}");
    assert_eq!(state(&registry), before);
    assert_eq!(url_of(&registry, a), "https://a2");
    assert!(
        registry
            .snapshot(&acme())
            .unwrap()
            .connections()
            .all(|c| c.value.name().as_str() == "twilio")
    );
}

#[test]
fn deleting_a_used_connection_is_refused_with_its_dependents() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(twilio("https://a")).unwrap();
    map_by_name(&registry, "orders", "twilio");
    map_by_id(&registry, "notifications", id);
    let before = state(&registry);

    let err = registry
        .delete_connection(&acme(), id, Version(1), DeleteMode::Refuse)
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(
        still_used(err),
        vec!["notifications".parse::<IntegrationId>().unwrap(), orders()]
    );
    assert!(
        text.contains("still used by integration(s) notifications; orders"),
        "{text}"
    );
    assert_eq!(state(&registry), before);
    assert_eq!(
        registry.dependents(&acme(), id),
        vec!["notifications".parse::<IntegrationId>().unwrap(), orders()]
    );
}

#[test]
fn a_forced_delete_goes_through_and_the_dependents_then_fail_to_resolve() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(twilio("https://a")).unwrap();
    map_by_name(&registry, "orders", "twilio");
    map_by_id(&registry, "notifications", id);

    let report = registry
        .delete_connection(&acme(), id, Version(1), DeleteMode::Force)
        .unwrap();
    assert!(registry.connection(&acme(), id).is_none());
    // The by-name reference now resolves to nothing, and the report says so.
    assert_eq!(report.rebindings.len(), 1);
    assert_eq!(report.rebindings[0].integration, orders());
    assert_eq!(report.rebindings[0].before, id);
    assert_eq!(report.rebindings[0].after, None);

    let err = registry
        .resolve(&ResolveRequest::parse("acme", "notifications", "production").unwrap())
        .unwrap_err();
    assert_eq!(
        err.problems,
        vec![Problem::NotVisible {
            reference: ConnectionRef::Id(id),
            integration: "notifications".parse().unwrap()
        }]
    );
    assert!(
        registry
            .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
            .is_err()
    );
}

#[test]
fn a_connection_that_no_reference_resolves_to_is_not_used() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(named("crm", "https://shared"))
        .unwrap();
    let (own, _) = registry
        .create_connection(
            ConnectionSpec::integration("acme", "orders", "crm")
                .param(Param::plain("ServiceURL").default("https://own"))
                .build()
                .unwrap(),
        )
        .unwrap();
    // Orders refers to `crm` by name, which is its own connection.
    map_by_name(&registry, "orders", "crm");
    assert!(registry.dependents(&acme(), shared).is_empty());
    assert_eq!(registry.dependents(&acme(), own), vec![orders()]);
    registry
        .delete_connection(&acme(), shared, Version(1), DeleteMode::Refuse)
        .unwrap();

    // Deleting orders' own connection now would leave `crm` unresolved.
    let err = registry
        .delete_connection(&acme(), own, Version(1), DeleteMode::Refuse)
        .unwrap_err();
    assert_eq!(still_used(err), vec![orders()]);
}

#[test]
fn a_rename_that_would_strand_a_dependent_is_refused() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(twilio("https://a")).unwrap();
    map_by_name(&registry, "orders", "twilio");
    map_by_id(&registry, "notifications", id);
    let before = state(&registry);

    let err = registry
        .update_connection(id, Version(1), named("twilio-sms", "https://a"))
        .unwrap_err();
    assert_eq!(
        still_used(err),
        vec![orders()],
        "the by-ID reference survives a rename"
    );
    assert_eq!(state(&registry), before);
    assert_eq!(
        registry.connection(&acme(), id).unwrap().value.name().as_str(),
        "twilio"
    );

    // Re-pointing the dependent by ID and renaming in one batch goes through.
    registry
        .write(|tx| {
            let current = tx.project(&acme()).mappings(&orders()).unwrap().version;
            tx.set_mappings(
                Mappings::of("acme", "orders")
                    .by_id(id, [("ServiceURL", "URL")])
                    .build()?,
                Some(current),
            )?;
            tx.update_connection(id, Version(1), named("twilio-sms", "https://a"))
        })
        .unwrap();
    assert_eq!(
        registry.connection(&acme(), id).unwrap().value.name().as_str(),
        "twilio-sms"
    );
    let env = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(env.provenance("URL").unwrap().connection_id, id);
}

#[test]
fn moving_a_connection_to_another_integrations_scope_would_strand_its_user() {
    let registry = Registry::in_memory();
    let spec = |integration: &str| {
        ConnectionSpec::integration("acme", integration, "legacy-crm")
            .param(Param::plain("ServiceURL").default("https://crm"))
            .build()
            .unwrap()
    };
    let (id, _) = registry.create_connection(spec("orders")).unwrap();
    map_by_id(&registry, "orders", id);
    let err = registry
        .update_connection(id, Version(1), spec("billing"))
        .unwrap_err();
    assert_eq!(still_used(err), vec![orders()]);
    assert_eq!(
        registry.connection(&acme(), id).unwrap().value.scope(),
        &Scope::Integration(orders())
    );
}

#[test]
fn a_rename_that_hands_the_name_to_another_connection_is_a_rebinding() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(named("crm", "https://shared"))
        .unwrap();
    let own_spec = |name: &str| {
        ConnectionSpec::integration("acme", "orders", name)
            .param(Param::plain("ServiceURL").default("https://own"))
            .build()
            .unwrap()
    };
    let (own, _) = registry.create_connection(own_spec("crm")).unwrap();
    map_by_name(&registry, "orders", "crm");

    // Renaming orders' own `crm` leaves the project's `crm` to answer the name.
    let report = registry
        .update_connection(own, Version(1), own_spec("crm-sandbox"))
        .unwrap();
    assert_eq!(report.rebindings.len(), 1);
    assert_eq!(report.rebindings[0].before, own);
    assert_eq!(report.rebindings[0].after, Some(shared));
    let env = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(env.get("URL").unwrap().value().expose(), "https://shared");
}
