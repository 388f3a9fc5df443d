//! Answers "why did integration X get this value?" in full: the winner, the
//! layers it beat or that did not apply, and the connections it shadows.

use std::fmt;

use std::borrow::Borrow;

use super::env::name_hash;
use super::{
    Pinned, ProjectView, Provenance, ResolveError, ResolveRequest, ResolvedValue, ValueSource,
    find_connection, resolve_vars,
};
use crate::catalog::ProjectSnapshot;
use crate::model::{ConnectionId, ConnectionRef, Layer, ParamValues, ResolvePolicy, Scope, TemplateName};

/// What happened to one value layer of the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerOutcome {
    /// This layer supplied the value.
    Won,
    /// It applies, but a more specific layer won (rule 3).
    Outranked,
    /// It is for another environment or customer.
    NotApplicable,
}

/// One layer the resolver looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Considered {
    /// The layer.
    pub layer: Layer,
    /// What happened to it.
    pub outcome: LayerOutcome,
    /// The template whose layer it is, for a connection made from one;
    /// `None` for the connection's own layers.
    pub template: Option<TemplateName>,
}

/// The full story of one resolved variable.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The variable.
    pub variable: String,
    /// The value (`Display` redacts a secret).
    pub value: ResolvedValue,
    /// Where the value came from.
    pub provenance: Provenance,
    /// Every value layer of the parameter, in the order they were given, and
    /// what happened to each: the connection's own, then (for a connection
    /// made from a template) the template's. Empty for a value an OAuth
    /// application supplied.
    pub layers: Vec<Considered>,
    /// Project-scope connections of the same name that the winning
    /// integration-scope connection shadows (rule 2).
    pub shadows: Vec<ConnectionId>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} = {}", self.variable, self.value)?;
        writeln!(f, "  from {}", self.provenance)?;
        for id in &self.shadows {
            writeln!(f, "  shadows project-scope connection {id} of the same name")?;
        }
        for c in &self.layers {
            let what = match c.outcome {
                LayerOutcome::Won => "won",
                LayerOutcome::Outranked => "outranked by a more specific layer",
                LayerOutcome::NotApplicable => "not applicable to this request",
            };
            match &c.template {
                Some(t) => writeln!(f, "  template {t}, {}: {what}", c.layer)?,
                None => writeln!(f, "  {}: {what}", c.layer)?,
            }
        }
        Ok(())
    }
}

impl<S: Borrow<ProjectSnapshot>, P: Borrow<ResolvePolicy>> ProjectView<S, P> {
    /// Explains `variable` of `request`: `Ok(None)` if the integration does not get
    /// that variable; `Err` if the resolution itself fails.
    pub fn explain(
        &self,
        request: &ResolveRequest,
        variable: &str,
    ) -> Result<Option<Explanation>, ResolveError> {
        let (snapshot, policy): (&ProjectSnapshot, &ResolvePolicy) =
            (self.snapshot.borrow(), self.policy.borrow());
        let pinned = Pinned::new();
        let vars = resolve_vars(snapshot, policy, request, &pinned)?;
        let Some(var) = vars.find(name_hash(variable), variable) else {
            return Ok(None);
        };
        let provenance = var.provenance();
        let mut layers = Vec::new();
        let won = match &provenance.source {
            ValueSource::Template { template, layer } => Some((Some(template), layer)),
            other => other.layer().map(|l| (None, l)),
        };
        if let (Some((won_template, won)), Some(conn)) = (won, snapshot.connection(provenance.connection_id))
            && let Some(param) = conn.value.spec().param(provenance.param.as_str())
        {
            let mut consider = |values: &ParamValues, template: Option<&TemplateName>| {
                let present: Vec<&Layer> = match values {
                    ParamValues::Plain(l) => l.layers().collect(),
                    ParamValues::Secret(l) => l.layers().collect(),
                };
                for layer in present {
                    let outcome = if layer == won && template == won_template {
                        LayerOutcome::Won
                    } else if layer.applies(&request.environment, request.customer.as_ref()) {
                        LayerOutcome::Outranked
                    } else {
                        LayerOutcome::NotApplicable
                    };
                    layers.push(Considered {
                        layer: layer.clone(),
                        outcome,
                        template: template.cloned(),
                    });
                }
            };
            consider(param.values(), None);
            if let Some(name) = conn.value.spec().template()
                && let Some(t) = snapshot.template(name)
                && let Some(field) = t.value.field(param.name().as_str())
            {
                consider(field.values(), Some(name));
            }
        }
        let mut shadows = Vec::new();
        if matches!(provenance.scope, Scope::Integration(_))
            && let Some(project_conn) = snapshot.by_name(None, &provenance.connection)
            && find_connection(
                snapshot,
                &request.integration,
                &ConnectionRef::Name(provenance.connection.clone()),
            )
            .is_some_and(|c| c.value.id() == provenance.connection_id)
        {
            shadows.push(project_conn.value.id());
        }
        Ok(Some(Explanation {
            variable: variable.to_owned(),
            value: var.to_value(),
            provenance,
            layers,
            shadows,
        }))
    }
}
