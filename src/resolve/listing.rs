//! What a person may see of a connection: its fields, filtered by who is
//! looking ([`Viewer`]), with plain values and, for secrets, only whether
//! one is set; and the connections customers' own flows may use.
//!
//! **Field visibility, the one rule** ([`ProjectView::field_shown`]): a field
//! of a typed connection has its type's [`Visibility`]; a field of an
//! untyped connection is [`Visibility::Customer`] if each customer enters its
//! own value ([`Tenancy::PerCustomer`] with [`EnteredBy::Customer`]), else
//! [`Visibility::Organization`]. A viewer sees the field if the visibility
//! allows it ([`Field::visible_to`](crate::model::Field::visible_to)) and,
//! for people, if the connection's template does not hide it
//! ([`Presentation::Hidden`]). The host's code sees every field.

use std::borrow::Borrow;

use super::{ProjectView, ValueSource};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    BuilderAccess, Connection, ConnectionId, ConnectionName, ConnectionTemplate, ConnectionType, CustomerId,
    DataKind, EnteredBy, Environment, Param, ParamKind, ParamName, Presentation, Requirement, ResolvePolicy,
    Scope, TemplateName, Tenancy, TypeName, ValueOrigin, ValueRef, Viewer, Visibility, effective_value,
    visibility_allows,
};

/// A field's value as a listing shows it: plain values as they are, secrets
/// only as whether one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListedValue {
    /// No value applies to the environment (and customer).
    Unset,
    /// A plain value.
    Plain(String),
    /// A secret is set; its value is never listed.
    SecretSet,
}

/// One field of a connection in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedField {
    /// The field (the connection's parameter).
    pub name: ParamName,
    /// The label the type gives it (the name, for an untyped connection).
    pub label: String,
    /// Its data type, for a typed connection.
    pub data_kind: Option<DataKind>,
    /// Plain or secret.
    pub kind: ParamKind,
    /// Who may see and set it.
    pub visibility: Visibility,
    /// Required or optional.
    pub requirement: Requirement,
    /// Its value for the listing's environment (and customer).
    pub value: ListedValue,
    /// Where the value came from: one of the connection's own layers, or its
    /// template; `None` when unset.
    pub source: Option<ValueSource>,
}

/// A connection as one viewer may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionListing {
    /// The connection's ID.
    pub id: ConnectionId,
    /// Its name.
    pub name: ConnectionName,
    /// Its scope.
    pub scope: Scope,
    /// Its type, if it has one.
    pub connection_type: Option<TypeName>,
    /// The template it was made from, if any.
    pub template: Option<TemplateName>,
    /// Whether customers' own flows may use it.
    pub builder: BuilderAccess,
    /// The fields the viewer may see, in the type's order (the connection's,
    /// untyped).
    pub fields: Vec<ListedField>,
}

/// A connection a customer's own flow may use, as that customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuilderConnection {
    /// The connection, listed for the customer.
    pub listing: ConnectionListing,
    /// The fields the customer must still provide before a flow can use it
    /// (required, entered by the customer, no value yet), in the type's
    /// order.
    pub owed: Vec<ParamName>,
    /// Whether every required field has a value for the customer in the
    /// environment (including the ones the organization sets).
    pub ready: bool,
}

impl<S: Borrow<ProjectSnapshot>, P: Borrow<ResolvePolicy>> ProjectView<S, P> {
    /// The type a connection follows, if it has one the project knows.
    pub(super) fn type_of(&self, connection: &Connection) -> Option<&ConnectionType> {
        connection
            .spec()
            .connection_type()
            .and_then(|name| self.connection_type(name))
            .map(|t| &**t)
    }

    /// The template a connection was made from, if it is there.
    pub(super) fn template_of(&self, connection: &Connection) -> Option<&ConnectionTemplate> {
        let snapshot: &ProjectSnapshot = self.snapshot.borrow();
        connection
            .spec()
            .template()
            .and_then(|name| snapshot.template(name))
            .map(|t| &*t.value)
    }

    /// **Field visibility**: who may see and set `param` of a connection of
    /// type `ty`: the type's [`Visibility`] for the field; for an untyped
    /// connection, [`Visibility::Customer`] if each customer enters its own
    /// value ([`Tenancy::PerCustomer`] with [`EnteredBy::Customer`]), else
    /// [`Visibility::Organization`].
    pub fn field_visibility(ty: Option<&ConnectionType>, param: &Param) -> Visibility {
        match ty.and_then(|t| t.field(param.name().as_str())) {
            Some(field) => field.visibility(),
            None => match param.tenancy() {
                Tenancy::PerCustomer(EnteredBy::Customer) => Visibility::Customer,
                _ => Visibility::Organization,
            },
        }
    }

    /// **Whether `viewer` sees `param`** of `connection`: its visibility
    /// ([`ProjectView::field_visibility`]) allows the viewer
    /// ([`Field::visible_to`](crate::model::Field::visible_to)) and, for
    /// people, the connection's template does not hide it
    /// ([`Presentation::Hidden`]); the host's code sees every field.
    pub fn field_shown(&self, connection: &Connection, param: &Param, viewer: &Viewer) -> bool {
        let visibility = Self::field_visibility(self.type_of(connection), param);
        let hidden = self
            .template_of(connection)
            .and_then(|t| t.field(param.name().as_str()))
            .is_some_and(|f| f.presentation() == Presentation::Hidden);
        visibility_allows(visibility, viewer) && (!hidden || *viewer == Viewer::Program)
    }

    /// Connection `id` as `viewer` may see it, with values for `env` (and,
    /// for a customer, that customer): only the fields the viewer may see,
    /// secrets only as whether one is set.
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, ConnectionType, Field, Layer, Target, Viewer, Visibility};
    /// use connective::prelude::*;
    /// use connective::resolve::ListedValue;
    /// let ty = ConnectionType::builder("twilio")
    ///     .auth(AuthScheme::ApiKey)
    ///     .field(Field::secret("ApiKey"))
    ///     .field(Field::string("Sender").visibility(Visibility::Customer).optional())
    ///     .build()?;
    /// let registry = Registry::in_memory();
    /// let acme: ProjectId = "acme".parse()?;
    /// registry.put_type(&acme, ty.clone(), None)?;
    /// let (id, _) = registry.create_connection(
    ///     ConnectionSpec::project("acme", "sms").target(Target::external("twilio")).of_type(&ty)
    ///         .value("ApiKey", Layer::Default, "tw-s3cret").value("Sender", Layer::Default, "ACME")
    ///         .build()?,
    /// )?;
    /// let production: Environment = "production".parse()?;
    /// let org = registry.listing(&acme, id, &Viewer::Organization, &production).unwrap();
    /// assert_eq!(org.fields[0].value, ListedValue::SecretSet);
    /// let globex = Viewer::Customer("globex".parse()?);
    /// let theirs = registry.listing(&acme, id, &globex, &production).unwrap();
    /// assert_eq!(theirs.fields.len(), 1);
    /// assert_eq!(theirs.fields[0].value, ListedValue::Plain("ACME".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listing(&self, id: ConnectionId, viewer: &Viewer, env: &Environment) -> Option<ConnectionListing> {
        let snapshot: &ProjectSnapshot = self.snapshot.borrow();
        let connection = &snapshot.connection(id)?.value;
        Some(self.list(connection, viewer, env))
    }

    /// Every connection of the project as `viewer` may see it (see
    /// [`ProjectView::listing`]); for a customer, only the connections with
    /// at least one field it may see.
    pub fn listings(&self, viewer: &Viewer, env: &Environment) -> Vec<ConnectionListing> {
        let snapshot: &ProjectSnapshot = self.snapshot.borrow();
        snapshot
            .connections()
            .map(|c| self.list(&c.value, viewer, env))
            .filter(|l| !matches!(viewer, Viewer::Customer(_)) || !l.fields.is_empty())
            .collect()
    }

    /// The connections `customer`'s own flows may use in `env`: the
    /// project's connections (an integration's belong to it) marked
    /// [`BuilderAccess::Available`], each as the customer sees it, with what
    /// the customer still owes and whether it is ready.
    pub fn builder_connections(&self, customer: &CustomerId, env: &Environment) -> Vec<BuilderConnection> {
        let snapshot: &ProjectSnapshot = self.snapshot.borrow();
        let viewer = Viewer::Customer(customer.clone());
        snapshot
            .connections()
            .map(|c| &*c.value)
            .filter(|c| *c.scope() == Scope::Project && c.spec().builder_access() == BuilderAccess::Available)
            .map(|c| {
                let template = self.template_of(c);
                let mut owed = Vec::new();
                let mut ready = true;
                for p in self.ordered_params(c) {
                    let has = effective_value(p, template, env, Some(customer)).is_some();
                    if p.requirement() == Requirement::Required && !has {
                        ready = false;
                        if p.tenancy() == Tenancy::PerCustomer(EnteredBy::Customer) {
                            owed.push(p.name().clone());
                        }
                    }
                }
                BuilderConnection {
                    listing: self.list(c, &viewer, env),
                    owed,
                    ready,
                }
            })
            .collect()
    }

    /// The connection's parameters in the type's field order, then any
    /// others in their own order.
    pub(super) fn ordered_params<'c>(&self, connection: &'c Connection) -> Vec<&'c Param> {
        let mut params: Vec<&Param> = connection.spec().params().iter().collect();
        if let Some(ty) = self.type_of(connection) {
            let position = |p: &Param| {
                ty.fields()
                    .iter()
                    .position(|f| f.name() == p.name())
                    .unwrap_or(usize::MAX)
            };
            params.sort_by_key(|p| position(p));
        }
        params
    }

    fn list(&self, connection: &Connection, viewer: &Viewer, env: &Environment) -> ConnectionListing {
        let ty = self.type_of(connection);
        let template = self.template_of(connection);
        let customer = match viewer {
            Viewer::Customer(c) => Some(c),
            _ => None,
        };
        let fields = self
            .ordered_params(connection)
            .into_iter()
            .filter(|p| self.field_shown(connection, p, viewer))
            .map(|p| {
                let field = ty.and_then(|t| t.field(p.name().as_str()));
                let found = effective_value(p, template, env, customer);
                let value = match found.as_ref().map(|(_, _, v)| v) {
                    None => ListedValue::Unset,
                    Some(ValueRef::Plain(v)) => ListedValue::Plain(v.to_string()),
                    Some(ValueRef::Secret(_)) => ListedValue::SecretSet,
                };
                let source = found.map(|(origin, layer, _)| match origin {
                    ValueOrigin::Connection => ValueSource::Layer(layer.clone()),
                    ValueOrigin::Template(t) => ValueSource::Template {
                        template: t.clone(),
                        layer: layer.clone(),
                    },
                });
                ListedField {
                    name: p.name().clone(),
                    label: field.map_or_else(|| p.name().to_string(), |f| f.label().to_owned()),
                    data_kind: field.map(|f| f.data_type().kind()),
                    kind: p.kind(),
                    visibility: Self::field_visibility(ty, p),
                    requirement: p.requirement(),
                    value,
                    source,
                }
            })
            .collect();
        ConnectionListing {
            id: connection.id(),
            name: connection.name().clone(),
            scope: connection.scope().clone(),
            connection_type: connection.spec().connection_type().cloned(),
            template: connection.spec().template().cloned(),
            builder: connection.spec().builder_access(),
            fields,
        }
    }
}
