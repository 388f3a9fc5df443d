//! Customer onboarding: what a customer must still provide before an
//! integration can deploy in an environment, answered without copying a
//! value.
//!
//! The answer walks the integration's mappings exactly as resolution does
//! (the same walk, the same lookup of each value; only the values are not
//! copied), so it is complete by construction: **an onboarding with nothing
//! owed and nothing blocked means resolving the same request succeeds**, and
//! the other way round.

use std::borrow::Borrow;

use super::lookup::{External, Lookup, Pinned, lookup};
use super::walk::walk;
use super::{Problem, ProjectView, ResolveRequest};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, ConnectionId, ConnectionName, CustomerId, DataKind, EnteredBy, Overrides, Param, ParamKind,
    ParamName, ResolvePolicy, Tenancy, TypeName, Viewer,
};

/// One field a customer must still provide.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OwedField {
    /// The connection.
    pub connection: ConnectionName,
    /// Its ID.
    pub connection_id: ConnectionId,
    /// Its type, if it has one.
    pub connection_type: Option<TypeName>,
    /// The field.
    pub field: ParamName,
    /// The label the type gives it (the name, for an untyped connection).
    pub label: String,
    /// Its data type, for a typed connection.
    pub data_kind: Option<DataKind>,
    /// Plain or secret.
    pub kind: ParamKind,
}

/// What a customer must still provide before an integration can deploy in
/// an environment ([`ProjectView::onboarding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Onboarding {
    /// The request: project, integration, environment and customer.
    pub request: ResolveRequest,
    /// The fields the customer enters that have no value yet, in wizard
    /// order: connections in the order the integration's mappings name
    /// them, fields in their type's order (the connection's, untyped), each
    /// once.
    pub owed: Vec<OwedField>,
    /// What stands in the way that the customer cannot provide (a value the
    /// organization sets, a reference to a connection that is gone, …):
    /// the problems resolution would report, other than the owed fields.
    pub blocked: Vec<Problem>,
}

impl Onboarding {
    /// Nothing owed and nothing blocked: resolving the request succeeds.
    pub fn is_complete(&self) -> bool {
        self.owed.is_empty() && self.blocked.is_empty()
    }
}

impl<S: Borrow<ProjectSnapshot>, P: Borrow<ResolvePolicy>> ProjectView<S, P> {
    /// **What the request's customer must still provide** before its
    /// integration can deploy in its environment. It walks the mappings
    /// with resolution's own walk and lookup, copying no value (a secret is
    /// only asked whether it is set; one in an external store, whether the
    /// host's cache holds it), so **nothing owed and nothing blocked
    /// means resolving the same request succeeds**, and the other way round.
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, ConnectionType, EnteredBy, Field, Target, Visibility};
    /// use connective::prelude::*;
    /// let ty = ConnectionType::builder("crm")
    ///     .field(Field::url("ServiceURL").default("https://crm.example.com"))
    ///     .field(Field::secret("Token").label("API token").visibility(Visibility::Customer)
    ///         .per_customer(EnteredBy::Customer))
    ///     .build()?;
    /// let registry = Registry::in_memory();
    /// let acme: ProjectId = "acme".parse()?;
    /// registry.put_type(&acme, ty.clone(), None)?;
    /// let (id, _) = registry.create_connection(
    ///     ConnectionSpec::project("acme", "crm").target(Target::external("crm")).of_type(&ty).build()?,
    /// )?;
    /// registry.set_mappings(Mappings::of("acme", "orders").by_name("crm", [("Token", "CRM_TOKEN")]).build()?, None)?;
    /// let request = ResolveRequest::parse("acme", "orders", "production")?.for_customer("globex")?;
    /// let owed = registry.onboarding(&request);
    /// assert_eq!(owed.owed[0].label, "API token");
    /// assert!(registry.resolve(&request).is_err());
    /// let layer = connective::model::Layer::Customer("globex".parse()?);
    /// let v = registry.connection(&acme, id).unwrap().version;
    /// registry.set_value(&acme, id, v, &"Token".parse()?, layer, "globex-token")?;
    /// assert!(registry.onboarding(&request).is_complete());
    /// assert!(registry.resolve(&request).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn onboarding(&self, request: &ResolveRequest) -> Onboarding {
        let (snapshot, policy) = self.parts();
        let mut answer = Onboarding {
            request: request.clone(),
            owed: Vec::new(),
            blocked: Vec::new(),
        };
        if request.project != *snapshot.project() {
            return answer;
        }
        let unreadable = snapshot.unreadable_for(&request.integration);
        if !unreadable.is_empty() {
            answer.blocked = unreadable
                .into_iter()
                .map(|record| Problem::Unreadable { record })
                .collect();
            return answer;
        }
        let Some(mappings) = snapshot.mappings(&request.integration) else {
            return answer;
        };
        let customer = request.customer.as_ref();
        let pinned = Pinned::new();
        let external = External {
            view: policy.external_secrets(),
            pinned: &pinned,
        };
        let (_, problems) = walk(
            snapshot,
            policy,
            &request.integration,
            mappings.value.uses(),
            |connection, param, explicit| match lookup(
                snapshot,
                connection,
                param,
                &request.environment,
                customer,
                explicit,
                external,
            )? {
                Lookup::Found(..) => Ok(Some(())),
                Lookup::Absent => Ok(None),
            },
        );
        // Connections in the order the walk met them; fields in type order.
        let mut order: Vec<ConnectionId> = Vec::new();
        let mut owed: Vec<(usize, usize, OwedField)> = Vec::new();
        for problem in problems {
            match self.owed_field(&problem) {
                Some((position, field)) => {
                    if owed
                        .iter()
                        .any(|(_, _, f)| f.connection_id == field.connection_id && f.field == field.field)
                    {
                        continue;
                    }
                    let connection = match order.iter().position(|c| *c == field.connection_id) {
                        Some(i) => i,
                        None => {
                            order.push(field.connection_id);
                            order.len() - 1
                        }
                    };
                    owed.push((connection, position, field));
                }
                None => answer.blocked.push(problem),
            }
        }
        owed.sort_by_key(|(connection, position, _)| (*connection, *position));
        answer.owed = owed.into_iter().map(|(_, _, f)| f).collect();
        answer
    }

    /// Whether `customer` may set its own value of `param` in the wizard:
    /// each customer enters its own, the customer sees the field
    /// ([`ProjectView::field_shown`]: not hidden by the template), and the
    /// template, if it fills the field, allows overriding it.
    fn customer_sets(&self, connection: &Connection, param: &Param, customer: &CustomerId) -> bool {
        param.tenancy() == Tenancy::PerCustomer(EnteredBy::Customer)
            && self.field_shown(connection, param, &Viewer::Customer(customer.clone()))
            && self
                .template_of(connection)
                .and_then(|t| t.field(param.name().as_str()))
                .is_none_or(|f| f.overrides() == Overrides::Allowed)
    }

    /// The field `problem` says the customer must provide, with its
    /// position in the wizard, or `None` if the customer cannot provide it.
    fn owed_field(&self, problem: &Problem) -> Option<(usize, OwedField)> {
        let Problem::MissingValue {
            connection_id,
            param,
            customer: Some(customer),
            ..
        } = problem
        else {
            return None;
        };
        let snapshot: &ProjectSnapshot = self.snapshot.borrow();
        let connection = &snapshot.connection(*connection_id)?.value;
        let p = connection.spec().param(param.as_str())?;
        if !self.customer_sets(connection, p, customer) {
            return None;
        }
        let ty = self.type_of(connection);
        let field = ty.and_then(|t| t.field(param.as_str()));
        let position = self
            .ordered_params(connection)
            .iter()
            .position(|q| q.name() == param)
            .unwrap_or(usize::MAX);
        Some((
            position,
            OwedField {
                connection: connection.name().clone(),
                connection_id: connection.id(),
                connection_type: connection.spec().connection_type().cloned(),
                field: param.clone(),
                label: field.map_or_else(|| param.to_string(), |f| f.label().to_owned()),
                data_kind: field.map(|f| f.data_type().kind()),
                kind: p.kind(),
            },
        ))
    }
}
