//! `connective check`: is a manifest ready to apply, and will every
//! integration it declares resolve?
//!
//! The manifest is loaded (every problem with its path), its secret references
//! are read, and it is planned and applied to a registry in memory (mappings
//! checked against the host's rules). Then each integration is resolved in
//! every environment, and for every customer, that the connections it uses
//! name (or those given on the command line).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use connective::manifest::{Manifest, SecretSources};
use connective::model::{CustomerId, EnvVarName, Environment, IntegrationId, Layer};
use connective::prelude::*;
use connective::resolve::Problem;

use crate::vault::VaultArgs;
use crate::{Exit, Failure, show};

/// Environments and customers one integration's connections name.
#[derive(Default)]
struct Named {
    environments: BTreeSet<Environment>,
    customers: BTreeSet<CustomerId>,
}

pub fn run(
    path: &Path,
    environments: &[Environment],
    customers: &[CustomerId],
    prefix: Option<EnvVarName>,
    vault: &VaultArgs,
) -> Result<Exit, Failure> {
    let manifest = Manifest::load(path)?;
    let mut builder = Registry::builder().policy(vault.policy(connective::model::ResolvePolicy::default())?);
    if let Some(prefix) = prefix {
        builder = builder.prefix(prefix);
    }
    let registry = builder.build()?;
    manifest
        .plan(&registry, &SecretSources::standard())?
        .apply(&registry)?;
    let project = manifest.project();
    let Some(snapshot) = registry.snapshot(project) else {
        show::line(&format!("{}: valid; it declares nothing", manifest.file()));
        return Ok(Exit::Ok);
    };

    // What each integration's connections name.
    let mut named: BTreeMap<IntegrationId, Named> = snapshot
        .all_mappings()
        .map(|m| (m.value.integration().clone(), Named::default()))
        .collect();
    for connection in snapshot.connections() {
        for integration in registry.dependents(project, connection.value.id()) {
            let entry = named.entry(integration).or_default();
            for layer in connection.value.spec().params().iter().flat_map(|p| p.layers()) {
                match layer {
                    Layer::Environment(e) => {
                        entry.environments.insert(e.clone());
                    }
                    Layer::Customer(c) => {
                        entry.customers.insert(c.clone());
                    }
                    Layer::CustomerEnvironment(c, e) => {
                        entry.environments.insert(e.clone());
                        entry.customers.insert(c.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    show::line(&format!(
        "{}: valid; secret references read; {} connections, mappings of {} integrations",
        manifest.file(),
        snapshot.connection_count(),
        named.len()
    ));
    let mut failures = 0;
    for (integration, named) in &named {
        let environments: Vec<Environment> = if !environments.is_empty() {
            environments.to_vec()
        } else if named.environments.is_empty() {
            // Nothing varies by environment: any one shows the values.
            vec![Environment::production()]
        } else {
            named.environments.iter().cloned().collect()
        };
        let customers: Vec<CustomerId> = if customers.is_empty() {
            named.customers.iter().cloned().collect()
        } else {
            customers.to_vec()
        };
        for environment in environments {
            let request = ResolveRequest::new(project.clone(), integration.clone(), environment);
            let mut attempts = vec![request.clone()];
            for customer in &customers {
                attempts.push(request.clone().for_customer(customer.clone())?);
            }
            for request in attempts {
                match registry.resolve(&request) {
                    Ok(env) => show::check_line(true, &format!("{request}: {} variables", env.len())),
                    Err(e)
                        if request.customer.is_none()
                            && e.problems
                                .iter()
                                .all(|p| matches!(p, Problem::CustomerRequired { .. })) =>
                    {
                        if customers.is_empty() {
                            failures += 1;
                            show::check_line(
                                false,
                                &format!(
                                    "{request}: has per-customer values, and no customer is named (give --customer)"
                                ),
                            );
                        } else {
                            show::check_line(true, &format!("{request}: resolves per customer only"));
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        show::check_line(false, &crate::vault::resolve_failure(e).message);
                    }
                }
            }
        }
    }
    if failures == 0 {
        Ok(Exit::Ok)
    } else {
        Err(Failure::new(
            Exit::Failure,
            format!(
                "{}: {failures} resolution{} failed",
                manifest.file(),
                if failures == 1 { "" } else { "s" }
            ),
        ))
    }
}
