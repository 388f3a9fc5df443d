//! Plan (what would change) and apply (one atomic write).

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::{
    ApplyError, DeclaredConnection, DeclaredMappings, DeclaredTemplate, DeclaredValue, Manifest,
    ManifestProblem, RefSpec, Rule, SecretSources, ValueSpec, find_declared,
};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, ConnectionId, ConnectionName, ConnectionRef, ConnectionSpec, ConnectionUse, EnvEntry,
    EnvMapping, IntegrationId, Layer, Mappings, MappingsError, ParamValues, ProjectId, ResolvePolicy,
    Revision, Scope, SecretEntry, Version, shorten,
};
use crate::model::{ConnectionTemplate, ConnectionType, TemplateName, TypeName, TypeSubject};
use crate::registry::{DeleteMode, Registry, RegistryError, Tx, WriteReport};
use crate::resolve::ProjectView;

/// What a plan does with one connection or one integration's mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Not in the registry yet.
    Create,
    /// In the registry, different.
    Update,
    /// In the registry, not in the manifest.
    Delete,
    /// Already as declared.
    Unchanged,
}

impl Action {
    /// [`Action::Update`] with what differs, or [`Action::Unchanged`].
    fn update_or_not(changes: Vec<String>) -> (Action, Vec<String>) {
        if changes.is_empty() {
            (Action::Unchanged, changes)
        } else {
            (Action::Update, changes)
        }
    }

    fn sign(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
            Action::Unchanged => '=',
        }
    }
}

/// The plan for one connection, by its stable key (scope, name).
#[derive(Debug, Clone)]
pub struct ConnectionChange {
    /// What happens.
    pub action: Action,
    /// The scope.
    pub scope: Scope,
    /// The name.
    pub name: ConnectionName,
    /// The connection's ID in the registry, unless it is created.
    pub id: Option<ConnectionId>,
    /// What differs, field by field (for [`Action::Update`]); secret values
    /// are never shown, only that they changed.
    pub changes: Vec<String>,
    version: Option<Version>,
    spec: Option<ConnectionSpec>,
    /// Where the manifest declares it (empty for a deletion).
    path: String,
}

/// The plan for one connection type of the project, by name.
#[derive(Debug, Clone)]
pub struct TypeChange {
    /// What happens.
    pub action: Action,
    /// The type.
    pub name: TypeName,
    /// What differs (for [`Action::Update`]).
    pub changes: Vec<String>,
    version: Option<Version>,
    definition: Option<ConnectionType>,
    /// Where the manifest declares it (empty for a deletion).
    path: String,
}

/// The plan for one template of the project, by name.
#[derive(Debug, Clone)]
pub struct TemplateChange {
    /// What happens.
    pub action: Action,
    /// The template.
    pub name: TemplateName,
    /// What differs (for [`Action::Update`]); secret values are never
    /// shown, only that they changed.
    pub changes: Vec<String>,
    version: Option<Version>,
    template: Option<ConnectionTemplate>,
    /// Where the manifest declares it (empty for a deletion).
    path: String,
}

/// How a mapping names its connection, independent of Connection IDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum UseKey {
    /// By name (rule 2 decides at resolution).
    Name(ConnectionName),
    /// Exactly the connection with this stable key.
    Conn(Scope, ConnectionName),
    /// An ID the registry no longer has (after a forced delete).
    Dangling(ConnectionId),
}

impl fmt::Display for UseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UseKey::Name(n) => write!(f, "connection {n}"),
            UseKey::Conn(s, n) => write!(f, "connection {n} at {s}"),
            UseKey::Dangling(id) => write!(f, "missing connection {id}"),
        }
    }
}

type Uses = Vec<(UseKey, EnvMapping)>;

/// The plan for one integration's mappings.
#[derive(Debug, Clone)]
pub struct MappingsChange {
    /// What happens.
    pub action: Action,
    /// The integration.
    pub integration: IntegrationId,
    /// What differs.
    pub changes: Vec<String>,
    version: Option<Version>,
    uses: Option<Uses>,
    /// Where the manifest declares them (empty for a deletion).
    path: String,
}

/// How many of each action a plan has (types, templates, connections and
/// mappings together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// To create.
    pub create: usize,
    /// To update.
    pub update: usize,
    /// To delete.
    pub delete: usize,
    /// Unchanged.
    pub unchanged: usize,
}

/// The difference between a manifest and a registry's project, ready to apply.
///
/// `Display` prints it for a person (`+` create, `~` update, `-` delete, `=`
/// unchanged); no secret value is ever shown.
#[derive(Debug, Clone)]
pub struct Plan {
    project: ProjectId,
    revision: Revision,
    types: Vec<TypeChange>,
    templates: Vec<TemplateChange>,
    connections: Vec<ConnectionChange>,
    mappings: Vec<MappingsChange>,
    preview: WriteReport,
}

/// What [`Plan::apply`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Applied {
    /// The registry's report of the write (revision, rebindings, OAuth
    /// applications provisioned and released).
    pub report: WriteReport,
    /// The connections created, with the IDs the registry gave them.
    pub created: Vec<(Scope, ConnectionName, ConnectionId)>,
    /// How many of each action.
    pub summary: Summary,
}

impl Manifest {
    /// Compares the manifest with `registry`'s project: resolves the secret
    /// references through `sources`, matches connections by (scope, name),
    /// and replays the writes the plan would make in a
    /// [`Registry::dry_run`], so whatever the registry would refuse when the
    /// plan is applied (a mapping against the host's policy, a reference left
    /// dangling, a project it cannot write) is found now. Every problem is
    /// reported at once.
    pub fn plan(&self, registry: &Registry, sources: &SecretSources) -> Result<Plan, super::ManifestError> {
        let mut problems = Vec::new();
        // Set once a refusal in the replay was recorded and stopped it.
        let mut stopped = false;
        let outcome = registry.dry_run(|tx| {
            let plan = self.changes(&tx.view(&self.project), sources, &mut problems);
            let replayed = plan.replay(tx, |step, error| {
                let go_on = self.refused(step, error.clone(), &mut problems);
                stopped = !go_on;
                if go_on { Ok(()) } else { Err(error) }
            });
            replayed.map(|_| plan)
        });
        let plan = match outcome {
            Ok((mut plan, report)) => {
                plan.preview = report;
                Some(plan)
            }
            Err(_) if stopped => None,
            // Refused by the checks a write makes before it commits.
            Err(error) => {
                self.refused(Step::Commit, error, &mut problems);
                None
            }
        };
        match plan {
            Some(plan) if problems.is_empty() => Ok(plan),
            _ => Err(self.invalid(problems)),
        }
    }

    /// What the manifest changes in the project `view` shows: the plan
    /// before it is replayed. A connection whose secrets could not be fetched
    /// is planned with them left out (its problems are recorded), so that
    /// the replay can still check the mappings that use it.
    fn changes(
        &self,
        view: &ProjectView<&ProjectSnapshot, &ResolvePolicy>,
        sources: &SecretSources,
        problems: &mut Vec<ManifestProblem>,
    ) -> Plan {
        let snapshot = view.snapshot;
        let context = self.source_context();
        // The host's types the document was written against must be this
        // registry's host's.
        for decl in &self.host_types {
            let name = decl.definition.name();
            let host = view.policy.types().get(name.as_str());
            if host.is_none_or(|t| **t != decl.definition) {
                problems.push(ManifestProblem::at(
                    &decl.path,
                    Rule::HostTypeMismatch {
                        name: name.clone(),
                        missing: host.is_none(),
                    },
                ));
            }
        }
        let mut connections = Vec::new();
        for decl in &self.connections {
            let existing = snapshot.by_name(decl.scope.integration(), &decl.name);
            let before = problems.len();
            let spec = self.desired_spec(decl, existing.map(|c| &*c.value), sources, &context, problems);
            let spec = match spec {
                Some(spec) => spec,
                // The secrets failed (recorded); without them, for the replay.
                None => match decl.spec(&self.project, |_| None) {
                    Ok(placeholder) if problems.len() > before => placeholder,
                    _ => continue,
                },
            };
            let (action, changes) = match existing {
                None => (Action::Create, Vec::new()),
                Some(c) => Action::update_or_not(diff_specs(c.value.spec(), &spec)),
            };
            connections.push(ConnectionChange {
                action,
                scope: decl.scope.clone(),
                name: decl.name.clone(),
                id: existing.map(|c| c.value.id()),
                changes,
                version: existing.map(|c| c.version),
                spec: Some(spec),
                path: decl.path.clone(),
            });
        }
        let mut gone: Vec<_> = snapshot
            .connections()
            .filter(|c| {
                find_declared(
                    &self.connections,
                    &self.connection_index,
                    c.value.scope(),
                    c.value.name(),
                )
                .is_none()
            })
            .collect();
        gone.sort_by(|a, b| (a.value.scope(), a.value.name()).cmp(&(b.value.scope(), b.value.name())));
        connections.extend(gone.into_iter().map(|c| ConnectionChange {
            action: Action::Delete,
            scope: c.value.scope().clone(),
            name: c.value.name().clone(),
            id: Some(c.value.id()),
            changes: Vec::new(),
            version: Some(c.version),
            spec: None,
            path: String::new(),
        }));
        Plan {
            project: self.project.clone(),
            revision: snapshot.revision(),
            types: self.type_changes(snapshot),
            templates: self.template_changes(snapshot, sources, &context, problems),
            connections,
            mappings: self.mappings_changes(view, problems),
            preview: WriteReport::default(),
        }
    }

    /// What the manifest changes in the project's own connection types.
    fn type_changes(&self, snapshot: &ProjectSnapshot) -> Vec<TypeChange> {
        let mut out = Vec::with_capacity(self.types.len());
        for decl in &self.types {
            let existing = snapshot
                .project_types()
                .find(|t| t.value.name() == decl.definition.name());
            let (action, changes) = match existing {
                None => (Action::Create, Vec::new()),
                Some(t) => Action::update_or_not(diff_types(t.value.definition(), &decl.definition)),
            };
            out.push(TypeChange {
                action,
                name: decl.definition.name().clone(),
                changes,
                version: existing.map(|t| t.version),
                definition: Some(decl.definition.clone()),
                path: decl.path.clone(),
            });
        }
        let declared: HashSet<&TypeName> = self.types.iter().map(|d| d.definition.name()).collect();
        let mut gone: Vec<_> = snapshot
            .project_types()
            .filter(|t| !declared.contains(t.value.name()))
            .collect();
        gone.sort_by(|a, b| a.value.name().cmp(b.value.name()));
        out.extend(gone.into_iter().map(|t| TypeChange {
            action: Action::Delete,
            name: t.value.name().clone(),
            changes: Vec::new(),
            version: Some(t.version),
            definition: None,
            path: String::new(),
        }));
        out
    }

    /// What the manifest changes in the project's templates, with their
    /// secrets fetched (a template whose secrets could not be is left out;
    /// its problems are recorded).
    fn template_changes(
        &self,
        snapshot: &ProjectSnapshot,
        sources: &SecretSources,
        context: &super::SourceContext,
        problems: &mut Vec<ManifestProblem>,
    ) -> Vec<TemplateChange> {
        let mut out = Vec::with_capacity(self.templates.len());
        for decl in &self.templates {
            let existing = snapshot.template(&decl.name);
            let Some(template) =
                self.desired_template(decl, existing.map(|t| &*t.value), sources, context, problems)
            else {
                continue;
            };
            let (action, changes) = match existing {
                None => (Action::Create, Vec::new()),
                Some(t) => Action::update_or_not(diff_templates(&t.value, &template)),
            };
            out.push(TemplateChange {
                action,
                name: decl.name.clone(),
                changes,
                version: existing.map(|t| t.version),
                template: Some(template),
                path: decl.path.clone(),
            });
        }
        let declared: HashSet<&TemplateName> = self.templates.iter().map(|d| &d.name).collect();
        let mut gone: Vec<_> = snapshot
            .templates()
            .filter(|t| !declared.contains(t.value.name()))
            .collect();
        gone.sort_by(|a, b| a.value.name().cmp(b.value.name()));
        out.extend(gone.into_iter().map(|t| TemplateChange {
            action: Action::Delete,
            name: t.value.name().clone(),
            changes: Vec::new(),
            version: Some(t.version),
            template: None,
            path: String::new(),
        }));
        out
    }

    /// The template a declaration asks for, with its secrets fetched
    /// (`keep:existing` keeps the registry's template's value of the layer).
    fn desired_template(
        &self,
        decl: &DeclaredTemplate,
        existing: Option<&ConnectionTemplate>,
        sources: &SecretSources,
        context: &super::SourceContext,
        problems: &mut Vec<ManifestProblem>,
    ) -> Option<ConnectionTemplate> {
        let before = problems.len();
        let field_of = value_owners(decl.fields.iter().map(|f| &f.values));
        let template = decl.template(&self.project, |v: &DeclaredValue| {
            let ValueSpec::Secret(reference) = &v.value else {
                return None;
            };
            let field = field_of.get(v.path.as_str()).and_then(|&i| decl.fields.get(i))?;
            if reference.is_keep() {
                let kept =
                    existing
                        .and_then(|t| t.field(field.name.as_str()))
                        .and_then(|f| match f.values() {
                            ParamValues::Secret(layers) => match layers.get_any(&v.layer) {
                                Some(SecretEntry::Stored(s)) => Some(s.expose().to_owned()),
                                _ => None,
                            },
                            ParamValues::Plain(_) => None,
                        });
                if kept.is_none() {
                    problems.push(ManifestProblem::at(
                        &v.path,
                        Rule::NothingToKeepInTemplate {
                            template: decl.name.clone(),
                            field: field.name.clone(),
                            layer: v.layer.to_string(),
                        },
                    ));
                }
                return kept;
            }
            fetch(reference, &v.path, sources, context, problems).map(|value| value.expose().to_owned())
        });
        match template {
            Ok(t) if problems.len() == before => Some(t),
            Ok(_) => None,
            Err(e) => {
                for p in e.problems {
                    problems.push(ManifestProblem::at(&decl.path, Rule::Type(p)));
                }
                None
            }
        }
    }

    /// What the manifest changes in the project's mappings.
    fn mappings_changes(
        &self,
        view: &ProjectView<&ProjectSnapshot, &ResolvePolicy>,
        problems: &mut Vec<ManifestProblem>,
    ) -> Vec<MappingsChange> {
        let snapshot = view.snapshot;
        let mut mappings = Vec::new();
        for decl in &self.integrations {
            let Some(uses) = self.desired_uses(decl, view, problems) else {
                continue;
            };
            let existing = snapshot.mappings(&decl.integration);
            let (action, changes) = match existing {
                None => (Action::Create, Vec::new()),
                Some(m) => Action::update_or_not(diff_uses(&existing_uses(snapshot, m.value.uses()), &uses)),
            };
            mappings.push(MappingsChange {
                action,
                integration: decl.integration.clone(),
                changes,
                version: existing.map(|m| m.version),
                uses: Some(uses),
                path: decl.path.clone(),
            });
        }
        let declared: HashSet<&IntegrationId> = self.integrations.iter().map(|m| &m.integration).collect();
        let mut gone: Vec<_> = snapshot
            .all_mappings()
            .filter(|m| !declared.contains(m.value.integration()))
            .collect();
        gone.sort_by(|a, b| a.value.integration().cmp(b.value.integration()));
        mappings.extend(gone.into_iter().map(|m| MappingsChange {
            action: Action::Delete,
            integration: m.value.integration().clone(),
            changes: Vec::new(),
            version: Some(m.version),
            uses: None,
            path: String::new(),
        }));
        mappings
    }

    /// Records a write the registry refused in the plan's dry run, where the
    /// manifest asked for it; returns whether the replay may go on (a
    /// refused mapping changes nothing, so the next ones are still checked).
    fn refused(&self, step: Step<'_>, error: RegistryError, problems: &mut Vec<ManifestProblem>) -> bool {
        let path = match step {
            Step::Type(t) => t.path.clone(),
            Step::Template(t) => t.path.clone(),
            Step::Connection(c) => c.path.clone(),
            Step::Mappings(m) => m.path.clone(),
            Step::Commit => match &error {
                RegistryError::InvalidMappings { integration, .. } => self
                    .integrations
                    .iter()
                    .find(|d| &d.integration == integration)
                    .map_or_else(String::new, |d| d.path.clone()),
                // A type change leaving a connection or template that does
                // not fit: where that one is declared.
                RegistryError::Type(e) => match &e.subject {
                    TypeSubject::Connection(name) => self
                        .connections
                        .iter()
                        .find(|d| d.name.as_str() == name)
                        .map_or_else(String::new, |d| d.path.clone()),
                    TypeSubject::Template(name) => self
                        .templates
                        .iter()
                        .find(|d| d.name.as_str() == name)
                        .map_or_else(String::new, |d| d.path.clone()),
                    _ => String::new(),
                },
                _ => String::new(),
            },
        };
        match error {
            RegistryError::InvalidMappings { problems: found, .. } => {
                problems.extend(
                    found
                        .into_iter()
                        .map(|p| ManifestProblem::at(&path, Rule::Mapping(p))),
                );
                true
            }
            RegistryError::MappingsSyntax(e) => {
                problems.extend(
                    e.problems
                        .into_iter()
                        .map(|p| ManifestProblem::at(&path, Rule::Spec(p))),
                );
                true
            }
            other => {
                problems.push(ManifestProblem::at(&path, Rule::Refused(Box::new(other))));
                false
            }
        }
    }

    /// The spec a declaration asks for, with its secrets fetched.
    fn desired_spec(
        &self,
        decl: &DeclaredConnection,
        existing: Option<&Connection>,
        sources: &SecretSources,
        context: &super::SourceContext,
        problems: &mut Vec<ManifestProblem>,
    ) -> Option<ConnectionSpec> {
        let before = problems.len();
        let param_of = value_owners(decl.params.iter().map(|p| &p.values));
        let spec = decl.spec(&self.project, |v| {
            let ValueSpec::Secret(reference) = &v.value else {
                return None;
            };
            let param = param_of.get(v.path.as_str()).and_then(|&i| decl.params.get(i))?;
            if reference.is_keep() {
                let kept = existing
                    .and_then(|c| c.spec().param(param.name.as_str()))
                    .and_then(|p| match p.values() {
                        ParamValues::Secret(layers) => layers.get_any(&v.layer).cloned(),
                        ParamValues::Plain(_) => None,
                    });
                if kept.is_none() {
                    problems.push(ManifestProblem::at(
                        &v.path,
                        Rule::NothingToKeep {
                            connection: decl.name.clone(),
                            param: param.name.clone(),
                            layer: v.layer.to_string(),
                        },
                    ));
                }
                return kept;
            }
            fetch(reference, &v.path, sources, context, problems).map(SecretEntry::Stored)
        });
        match spec {
            Ok(spec) if problems.len() == before => Some(spec),
            Ok(_) => None,
            Err(e) => {
                for p in e.problems {
                    problems.push(ManifestProblem::at(&decl.path, Rule::Spec(p)));
                }
                None
            }
        }
    }

    /// An integration's uses as stable keys; `connectionConfig` IDs are
    /// looked up in the registry.
    fn desired_uses(
        &self,
        decl: &DeclaredMappings,
        view: &ProjectView<&ProjectSnapshot, &ResolvePolicy>,
        problems: &mut Vec<ManifestProblem>,
    ) -> Option<Uses> {
        let before = problems.len();
        let mut out = Vec::with_capacity(decl.uses.len());
        for u in &decl.uses {
            let key = match &u.reference {
                RefSpec::Name(n) => UseKey::Name(n.clone()),
                RefSpec::Pinned(s, n) => UseKey::Conn(s.clone(), n.clone()),
                RefSpec::Id(id) => {
                    let at = format!("{}.connectionConfig", u.path);
                    let Some(c) = view.find_connection(&decl.integration, &ConnectionRef::Id(*id)) else {
                        problems.push(ManifestProblem::at(
                            at,
                            Rule::UnknownConnectionId {
                                id: *id,
                                project: self.project.clone(),
                                integration: decl.integration.clone(),
                            },
                        ));
                        continue;
                    };
                    let (scope, name) = (c.value.scope().clone(), c.value.name().clone());
                    let Some(declared) =
                        find_declared(&self.connections, &self.connection_index, &scope, &name)
                    else {
                        problems.push(ManifestProblem::at(
                            at,
                            Rule::UndeclaredConnectionId { id: *id, name, scope },
                        ));
                        continue;
                    };
                    // The check loading could not do without the registry.
                    for (k, e) in u.env.iter().flatten().enumerate() {
                        if !super::declares(declared, &e.from) {
                            problems.push(ManifestProblem::at(
                                format!("{}.env[{k}].from", u.path),
                                Rule::UnknownParam {
                                    connection: name.clone(),
                                    param: e.from.clone(),
                                },
                            ));
                        }
                    }
                    UseKey::Conn(scope, name)
                }
            };
            let env = match &u.env {
                None => EnvMapping::Defaults,
                Some(entries) => EnvMapping::Explicit(entries.clone()),
            };
            out.push((key, env));
        }
        (problems.len() == before).then_some(out)
    }
}

/// A secret reference's value from `sources`, or `None` after recording at
/// `path` why there is none (an unknown scheme, a failed fetch; never a
/// value).
fn fetch(
    reference: &super::SecretRef,
    path: &str,
    sources: &SecretSources,
    context: &super::SourceContext,
    problems: &mut Vec<ManifestProblem>,
) -> Option<crate::model::SecretValue> {
    if !sources.knows(reference.scheme()) {
        problems.push(ManifestProblem::at(
            path,
            Rule::UnknownScheme {
                known: sources.schemes(),
            },
        ));
        return None;
    }
    match sources.fetch(reference, context) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(ManifestProblem::at(
                path,
                Rule::SecretUnavailable {
                    reference: reference.to_string(),
                    reason: e.0,
                },
            ));
            None
        }
    }
}

fn existing_uses(snapshot: &ProjectSnapshot, uses: &[ConnectionUse]) -> Uses {
    uses.iter()
        .map(|u| {
            let key = match &u.reference {
                ConnectionRef::Name(n) => UseKey::Name(n.clone()),
                ConnectionRef::Id(id) => match snapshot.connection(*id) {
                    Some(c) => UseKey::Conn(c.value.scope().clone(), c.value.name().clone()),
                    None => UseKey::Dangling(*id),
                },
            };
            (key, u.env.clone())
        })
        .collect()
}

/// Mappings from stable keys, with `id_of` giving each pinned connection's ID.
fn to_mappings(
    project: &ProjectId,
    integration: &IntegrationId,
    uses: &Uses,
    mut id_of: impl FnMut(&Scope, &ConnectionName) -> Option<ConnectionId>,
) -> Option<Result<Mappings, MappingsError>> {
    let mut out = Vec::with_capacity(uses.len());
    for (key, env) in uses {
        let reference = match key {
            UseKey::Name(n) => ConnectionRef::Name(n.clone()),
            UseKey::Conn(s, n) => ConnectionRef::Id(id_of(s, n)?),
            UseKey::Dangling(id) => ConnectionRef::Id(*id),
        };
        out.push(ConnectionUse {
            reference,
            env: env.clone(),
        });
    }
    Some(Mappings::new(project.clone(), integration.clone(), out))
}

/// Which parameter (or template field), by position, declares each value,
/// by the value's path: a secret value finds its owner in constant time
/// however many values (customers, environments) a parameter has.
fn value_owners<'a>(owners: impl Iterator<Item = &'a Vec<DeclaredValue>>) -> HashMap<&'a str, usize> {
    let mut out = HashMap::new();
    for (i, values) in owners.enumerate() {
        for v in values {
            out.entry(v.path.as_str()).or_insert(i);
        }
    }
    out
}

fn diff_uses(before: &Uses, after: &Uses) -> Vec<String> {
    if before == after {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (key, env) in after {
        match before.iter().find(|(k, _)| k == key) {
            None => out.push(format!("uses {key}")),
            Some((_, old)) if old != env => out.push(format!("{key}: {}", describe_env_change(old, env))),
            Some(_) => {}
        }
    }
    for (key, _) in before {
        if !after.iter().any(|(k, _)| k == key) {
            out.push(format!("no longer uses {key}"));
        }
    }
    if out.is_empty() {
        out.push("order of connections changed".into());
    }
    out
}

fn describe_env_change(old: &EnvMapping, new: &EnvMapping) -> String {
    let show = |m: &EnvMapping| match m {
        EnvMapping::Defaults => "default variable names".to_string(),
        EnvMapping::Explicit(entries) => {
            let items: Vec<String> = entries
                .iter()
                .map(|EnvEntry { from, to }| format!("{from}→{to}"))
                .collect();
            format!("[{}]", items.join(", "))
        }
    };
    format!("{} → {}", show(old), show(new))
}

/// What differs between two specs of one connection; secret values are
/// compared without being shown.
fn diff_specs(old: &ConnectionSpec, new: &ConnectionSpec) -> Vec<String> {
    let mut out = Vec::new();
    if old.description() != new.description() {
        out.push("description changed".into());
    }
    if old.target() != new.target() {
        if old.target().to_string() == new.target().to_string() {
            out.push(format!("target {}: endpoint or visibility changed", new.target()));
        } else {
            out.push(format!("target: {} → {}", old.target(), new.target()));
        }
    }
    if old.auth() != new.auth() {
        out.push(format!("auth: {} → {}", old.auth(), new.auth()));
    }
    for p in new.params() {
        let Some(q) = old.param(p.name().as_str()) else {
            out.push(format!("parameter {} added", p.name()));
            continue;
        };
        let name = p.name();
        if q.kind() != p.kind() {
            out.push(format!("parameter {name}: {:?} → {:?}", q.kind(), p.kind()).to_lowercase());
        }
        if q.description() != p.description() {
            out.push(format!("parameter {name}: description changed"));
        }
        if q.requirement() != p.requirement() {
            out.push(
                format!("parameter {name}: {:?} → {:?}", q.requirement(), p.requirement()).to_lowercase(),
            );
        }
        if q.tenancy() != p.tenancy() {
            out.push(format!("parameter {name}: tenancy changed"));
        }
        match (q.values(), p.values()) {
            (ParamValues::Plain(a), ParamValues::Plain(b)) => {
                for (layer, value) in b.iter() {
                    match a.get(layer) {
                        None => out.push(format!("parameter {name}: {layer} added")),
                        Some(old) if old != value => out.push(format!(
                            "parameter {name}: {layer} changed ({:?} → {:?})",
                            shorten(old),
                            shorten(value)
                        )),
                        Some(_) => {}
                    }
                }
                removed_layers(&mut out, name, a.layers(), |l| b.get(l).is_some());
            }
            (ParamValues::Secret(a), ParamValues::Secret(b)) => {
                for layer in b.layers() {
                    match (a.get_any(layer), b.get_any(layer)) {
                        (None, Some(SecretEntry::External(r))) => out.push(format!(
                            "parameter {name}: secret {layer} added, referring to {r}"
                        )),
                        (None, _) => out.push(format!("parameter {name}: secret {layer} added")),
                        (Some(x), Some(y)) if !x.same_as(y) => match y {
                            // A reference is not secret: saying which helps review.
                            SecretEntry::External(r) => {
                                out.push(format!("parameter {name}: secret {layer} now refers to {r}"))
                            }
                            SecretEntry::Stored(_) => {
                                out.push(format!("parameter {name}: secret {layer} changed"))
                            }
                        },
                        _ => {}
                    }
                }
                removed_layers(&mut out, name, a.layers(), |l| b.get_any(l).is_some());
            }
            // A kind change is reported above; its values differ by nature.
            _ => {}
        }
    }
    for q in old.params() {
        if new.param(q.name().as_str()).is_none() {
            out.push(format!("parameter {} removed", q.name()));
        }
    }
    // Parameter order is presentation (TOML tables, like JSON objects, are
    // unordered): a manifest that only reorders parameters changes nothing.
    out
}

/// What differs between two definitions of one type.
fn diff_types(old: &ConnectionType, new: &ConnectionType) -> Vec<String> {
    let mut out = Vec::new();
    if old.label() != new.label() {
        out.push("label changed".into());
    }
    if old.description() != new.description() {
        out.push("description changed".into());
    }
    if old.auth() != new.auth() {
        out.push(format!("auth: {} → {}", old.auth(), new.auth()));
    }
    if old.target() != new.target() {
        out.push(format!("target: {} → {}", old.target(), new.target()));
    }
    for f in new.fields() {
        match old.field(f.name().as_str()) {
            None => out.push(format!("field {} added", f.name())),
            Some(g) if g != f => out.push(format!("field {} changed", f.name())),
            Some(_) => {}
        }
    }
    for g in old.fields() {
        if new.field(g.name().as_str()).is_none() {
            out.push(format!("field {} removed", g.name()));
        }
    }
    let order = |t: &ConnectionType| t.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    if out.is_empty() && order(old) != order(new) {
        out.push("fields reordered".into());
    }
    out
}

/// What differs between two versions of one template; secret values are
/// compared without being shown.
fn diff_templates(old: &ConnectionTemplate, new: &ConnectionTemplate) -> Vec<String> {
    let mut out = Vec::new();
    if old.label() != new.label() {
        out.push("label changed".into());
    }
    if old.description() != new.description() {
        out.push("description changed".into());
    }
    if old.connection_type() != new.connection_type() {
        out.push(format!(
            "type: {} → {}",
            old.connection_type(),
            new.connection_type()
        ));
    }
    for f in new.fields() {
        let name = f.name();
        let Some(g) = old.field(name.as_str()) else {
            out.push(format!("field {name} added"));
            continue;
        };
        if g.presentation() != f.presentation() {
            out.push(format!("field {name}: {:?} → {:?}", g.presentation(), f.presentation()).to_lowercase());
        }
        if g.overrides() != f.overrides() {
            out.push(format!("field {name}: {:?} → {:?}", g.overrides(), f.overrides()).to_lowercase());
        }
        match (g.values(), f.values()) {
            (ParamValues::Plain(a), ParamValues::Plain(b)) => {
                for (layer, value) in b.iter() {
                    match a.get(layer) {
                        None => out.push(format!("field {name}: {layer} added")),
                        Some(old) if old != value => out.push(format!(
                            "field {name}: {layer} changed ({:?} → {:?})",
                            shorten(old),
                            shorten(value)
                        )),
                        Some(_) => {}
                    }
                }
                for layer in a.layers() {
                    if b.get(layer).is_none() {
                        out.push(format!("field {name}: {layer} removed"));
                    }
                }
            }
            (ParamValues::Secret(a), ParamValues::Secret(b)) => {
                for layer in b.layers() {
                    match (a.get_any(layer), b.get_any(layer)) {
                        (None, _) => out.push(format!("field {name}: secret {layer} added")),
                        (Some(x), Some(y)) if !x.same_as(y) => {
                            out.push(format!("field {name}: secret {layer} changed"))
                        }
                        _ => {}
                    }
                }
                for layer in a.layers() {
                    if b.get_any(layer).is_none() {
                        out.push(format!("field {name}: {layer} removed"));
                    }
                }
            }
            _ => out.push(format!("field {name}: plain or secret changed")),
        }
    }
    for g in old.fields() {
        if new.field(g.name().as_str()).is_none() {
            out.push(format!("field {} removed", g.name()));
        }
    }
    out
}

fn removed_layers<'a>(
    out: &mut Vec<String>,
    name: &crate::model::ParamName,
    old: impl Iterator<Item = &'a Layer>,
    still: impl Fn(&Layer) -> bool,
) {
    for layer in old {
        if !still(layer) {
            out.push(format!("parameter {name}: {layer} removed"));
        }
    }
}

impl Plan {
    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The revision of the project the plan was made against.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Per connection, manifest order first, then deletions.
    pub fn connections(&self) -> &[ConnectionChange] {
        &self.connections
    }

    /// Per integration's mappings, manifest order first, then deletions.
    pub fn mappings(&self) -> &[MappingsChange] {
        &self.mappings
    }

    /// What happens to the project's connection types.
    pub fn types(&self) -> &[TypeChange] {
        &self.types
    }

    /// What happens to the project's templates.
    pub fn templates(&self) -> &[TemplateChange] {
        &self.templates
    }

    /// How many of each action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let actions = self
            .types
            .iter()
            .map(|t| t.action)
            .chain(self.templates.iter().map(|t| t.action))
            .chain(self.connections.iter().map(|c| c.action))
            .chain(self.mappings.iter().map(|m| m.action));
        for a in actions {
            match a {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::Unchanged => s.unchanged += 1,
            }
        }
        s
    }

    /// What applying the plan would do, as the registry's dry run of its
    /// writes reported it: the OAuth applications provisioned and released,
    /// the name references that would resolve to another connection, the
    /// connections created (their Connection IDs here are the dry run's,
    /// not the ones applying gives them).
    pub fn preview(&self) -> &WriteReport {
        &self.preview
    }

    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        let s = self.summary();
        s.create + s.update + s.delete == 0
    }

    /// Applies the plan as one atomic [`Registry::write`]: puts types and
    /// templates, creates and updates connections, sets and deletes
    /// mappings, then deletes connections, templates and types, each naming the version the plan read: the writes the
    /// plan replayed in its dry run. If the registry changed since the plan,
    /// nothing is written and the error is retryable (plan again). An empty
    /// plan writes nothing.
    pub fn apply(&self, registry: &Registry) -> Result<Applied, ApplyError> {
        let current = registry
            .snapshot(&self.project)
            .map_or(Revision(0), |s| s.revision());
        if current != self.revision {
            return Err(ApplyError::Stale {
                project: self.project.clone(),
                planned: self.revision,
                current,
            });
        }
        if self.is_empty() {
            return Ok(Applied {
                report: WriteReport {
                    revision: registry.catalog().revision(),
                    ..WriteReport::default()
                },
                created: Vec::new(),
                summary: self.summary(),
            });
        }
        let (created, report) = registry
            .write(|tx| self.replay(tx, |_, error| Err(error)))
            .map_err(|source| ApplyError::Registry {
                project: self.project.clone(),
                source: Box::new(source),
            })?;
        Ok(Applied {
            report,
            created,
            summary: self.summary(),
        })
    }

    /// **The plan's writes, in the one order both [`Plan::apply`] and the
    /// plan's dry run make them**, so the two cannot disagree: types and
    /// templates put, connections created and updated, then mappings set and
    /// deleted, then connections, templates and types deleted, each naming the version the plan read. `refused` decides
    /// what a refused write does: its error stops the replay, `Ok` goes on.
    fn replay(
        &self,
        tx: &mut Tx<'_>,
        mut refused: impl FnMut(Step<'_>, RegistryError) -> Result<(), RegistryError>,
    ) -> Result<Created, RegistryError> {
        let mut ids: HashMap<(Scope, ConnectionName), ConnectionId> = self
            .connections
            .iter()
            .filter(|c| c.action != Action::Delete)
            .filter_map(|c| Some(((c.scope.clone(), c.name.clone()), c.id?)))
            .collect();
        let mut created = Vec::new();
        for t in &self.types {
            if let (Action::Create | Action::Update, Some(definition)) = (t.action, &t.definition) {
                tx.put_type(&self.project, definition.clone(), t.version)
                    .or_else(|e| refused(Step::Type(t), e))?;
            }
        }
        for t in &self.templates {
            if let (Action::Create | Action::Update, Some(template)) = (t.action, &t.template) {
                tx.put_template(template.clone(), t.version)
                    .or_else(|e| refused(Step::Template(t), e))?;
            }
        }
        for c in &self.connections {
            let done = match (c.action, &c.spec, c.id, c.version) {
                (Action::Create, Some(spec), _, _) => tx.create_connection(spec.clone()).map(|id| {
                    ids.insert((c.scope.clone(), c.name.clone()), id);
                    created.push((c.scope.clone(), c.name.clone(), id));
                }),
                (Action::Update, Some(spec), Some(id), Some(version)) => {
                    tx.update_connection(id, version, spec.clone())
                }
                _ => Ok(()),
            };
            done.or_else(|e| refused(Step::Connection(c), e))?;
        }
        for m in &self.mappings {
            let done = match (m.action, &m.uses, m.version) {
                (Action::Create | Action::Update, Some(uses), version) => {
                    // `None`: a pinned connection that is not planned (its
                    // declaration is invalid, which the plan reports).
                    match to_mappings(&self.project, &m.integration, uses, |s, n| {
                        ids.get(&(s.clone(), n.clone())).copied()
                    }) {
                        Some(mappings) => mappings
                            .map_err(RegistryError::from)
                            .and_then(|mappings| tx.set_mappings(mappings, version)),
                        None => Ok(()),
                    }
                }
                (Action::Delete, _, Some(version)) => {
                    tx.delete_mappings(&self.project, &m.integration, version)
                }
                _ => Ok(()),
            };
            done.or_else(|e| refused(Step::Mappings(m), e))?;
        }
        for c in &self.connections {
            if let (Action::Delete, Some(id), Some(version)) = (c.action, c.id, c.version) {
                tx.delete_connection(&self.project, id, version, DeleteMode::Refuse)
                    .or_else(|e| refused(Step::Connection(c), e))?;
            }
        }
        for t in &self.templates {
            if let (Action::Delete, Some(version)) = (t.action, t.version) {
                tx.delete_template(&self.project, &t.name, version)
                    .or_else(|e| refused(Step::Template(t), e))?;
            }
        }
        for t in &self.types {
            if let (Action::Delete, Some(version)) = (t.action, t.version) {
                tx.delete_type(&self.project, &t.name, version)
                    .or_else(|e| refused(Step::Type(t), e))?;
            }
        }
        Ok(created)
    }
}

/// The connections a write created, with the IDs the registry gave them.
type Created = Vec<(Scope, ConnectionName, ConnectionId)>;

/// Which write of a plan the registry refused, to say where in the
/// manifest; [`Step::Commit`] for the checks of the whole write before it
/// commits.
enum Step<'p> {
    Type(&'p TypeChange),
    Template(&'p TemplateChange),
    Connection(&'p ConnectionChange),
    Mappings(&'p MappingsChange),
    Commit,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to create, {} to update, {} to delete, {} unchanged",
            self.create, self.update, self.delete, self.unchanged
        )
    }
}

impl fmt::Display for Plan {
    /// One line per connection and per integration's mappings, with what
    /// changes indented below; no secret value is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan for project {} ({}): {}",
            self.project,
            self.revision,
            self.summary()
        )?;
        for t in &self.types {
            writeln!(f, "{} type {}", t.action.sign(), t.name)?;
            for change in &t.changes {
                writeln!(f, "    {change}")?;
            }
        }
        for t in &self.templates {
            writeln!(f, "{} template {}", t.action.sign(), t.name)?;
            for change in &t.changes {
                writeln!(f, "    {change}")?;
            }
        }
        for c in &self.connections {
            write!(f, "{} connection {} ({})", c.action.sign(), c.name, c.scope)?;
            if let Some(id) = c.id {
                write!(f, " {id}")?;
            }
            writeln!(f)?;
            for change in &c.changes {
                writeln!(f, "    {change}")?;
            }
        }
        for m in &self.mappings {
            writeln!(f, "{} mappings of integration {}", m.action.sign(), m.integration)?;
            for change in &m.changes {
                writeln!(f, "    {change}")?;
            }
        }
        Ok(())
    }
}
