//! Writes of connection types and templates, and the type check every
//! connection write runs.
//!
//! # Across replicas
//!
//! A connection that follows a type (or is made from a template) and the
//! type (or template) are different records, and each write is checked
//! against the other: a connection write against its type and template, a
//! type or template write against every connection following it. Two
//! replicas could each validate against the other's old state and both
//! commit (a type tightening a field rule beside a value that breaks the new
//! rule, a template locking a field beside an override of it), so, as for
//! mappings, the writes share a reference fence. Every write of a
//! connection that follows a type rewrites one fence, the stripe
//! [`NameStripe::of_typed`] of its name; every write of a type or a
//! template (definition or deletion) rewrites all [`NameStripe::COUNT`]
//! fences of its project. Whichever of the two commits second conflicts;
//! retried, it is checked again against the winner and refused with the
//! typed error if the result would not fit.
//!
//! Type and template writes are rare and administrative, so they pay the
//! cost: one conflicts with any concurrent structural write in its project.
//! Writes of typed connections about different names contend with each
//! other only when their stripes collide (1 chance in 64), as mapping
//! writes do.

use std::sync::Arc;

use super::{Registry, RegistryError, Tx, WriteReport};
use crate::model::{
    ConnectionSpec, ConnectionTemplate, ConnectionType, NameStripe, ProjectId, ProjectType, Record,
    RecordKey, ReferenceFence, TemplateName, TypeError, TypeName, Version, Versioned,
};
use crate::store::Expect;

impl Tx<'_> {
    /// The type and template `spec` follows, checked against each other
    /// and `spec` (every problem at once); nothing for a connection without
    /// a type.
    pub(super) fn check_typed(&mut self, spec: &ConnectionSpec) -> Result<(), RegistryError> {
        let Some(type_name) = spec.connection_type() else {
            return Ok(());
        };
        let project = spec.project_id().clone();
        let Some(ty) = self.view(&project).connection_type(type_name).cloned() else {
            return Err(RegistryError::UnknownType {
                project,
                name: type_name.clone(),
            });
        };
        let template = match spec.template() {
            None => None,
            Some(name) => match self.working_mut(&project).template(name) {
                Some(t) => Some(Arc::clone(&t.value)),
                None => {
                    return Err(RegistryError::UnknownTemplate {
                        project,
                        name: name.clone(),
                    });
                }
            },
        };
        ty.check_connection(spec, template.as_deref())?;
        Ok(())
    }

    /// Rewrites the fence a write of a connection following a type shares
    /// with the writes of its type and template (see "Across replicas" in
    /// the [module documentation](self)); nothing for an untyped one.
    pub(super) fn fence_typed(&mut self, spec: &ConnectionSpec) {
        if spec.connection_type().is_some() {
            self.fence_stripe(spec.project_id(), NameStripe::of_typed(spec.name()));
        }
    }

    /// Rewrites every fence of `project`: a type or template write
    /// conflicts with any concurrent write of a connection following one.
    fn fence_all(&mut self, project: &ProjectId) {
        for stripe in NameStripe::all() {
            self.fence_stripe(project, stripe);
        }
    }

    /// Rewrites the reference fence of `stripe` in `project`, once per
    /// transaction.
    fn fence_stripe(&mut self, project: &ProjectId, stripe: NameStripe) {
        let key = RecordKey::ReferenceFence(project.clone(), stripe);
        if !self.has_pending(&key) {
            self.put(Record::ReferenceFence(Arc::new(ReferenceFence {
                project: project.clone(),
                stripe,
            })));
        }
    }

    /// Defines or replaces a connection type of `project`, expecting
    /// `expected` (`None`: no such type yet). A project's type takes
    /// precedence over the host's of the same name. The write is refused if,
    /// as it would commit, a connection or template of the type does not fit
    /// it: the final state is checked, so one write may tighten a type and
    /// fix its connections.
    pub fn put_type(
        &mut self,
        project: &ProjectId,
        definition: ConnectionType,
        expected: Option<Version>,
    ) -> Result<(), RegistryError> {
        self.writable(project)?;
        let key = RecordKey::ConnectionType(project.clone(), definition.name().clone());
        self.check_version(&key, expected.map_or(Expect::Absent, Expect::Version))?;
        self.retype(project, definition.name());
        self.fence_all(project);
        self.put(Record::ConnectionType(Arc::new(ProjectType::new(
            project.clone(),
            definition,
        ))));
        Ok(())
    }

    /// Deletes a connection type of `project`, expecting `version`. If the
    /// host defines a type of the same name, the project's connections and
    /// templates follow that one from then on, and must fit it when the
    /// write commits; if not, the deletion is refused while any follow the
    /// type.
    pub fn delete_type(
        &mut self,
        project: &ProjectId,
        name: &TypeName,
        version: Version,
    ) -> Result<(), RegistryError> {
        self.writable(project)?;
        let key = RecordKey::ConnectionType(project.clone(), name.clone());
        self.check_version(&key, Expect::Version(version))?;
        let registry = self.registry;
        if registry.catalog.policy().types().get(name.as_str()).is_some() {
            self.retype(project, name);
        } else {
            let snapshot = self.working_mut(project);
            let mut connections: Vec<_> = snapshot
                .connections()
                .filter(|c| c.value.spec().connection_type() == Some(name))
                .map(|c| c.value.name().clone())
                .collect();
            let mut templates: Vec<_> = snapshot
                .templates()
                .filter(|t| t.value.connection_type() == name)
                .map(|t| t.value.name().clone())
                .collect();
            if !connections.is_empty() || !templates.is_empty() {
                connections.sort();
                templates.sort();
                return Err(RegistryError::TypeInUse {
                    project: project.clone(),
                    name: name.clone(),
                    connections,
                    templates,
                });
            }
        }
        self.fence_all(project);
        self.delete(key);
        Ok(())
    }

    /// Has the connections and templates following type `name` of `project`
    /// checked before the commit ([`Tx::check_typing`]).
    fn retype(&mut self, project: &ProjectId, name: &TypeName) {
        if !self.retyped.iter().any(|(p, n)| p == project && n == name) {
            self.retyped.push((project.clone(), name.clone()));
        }
    }

    /// **The type check of a write's final state**: every connection and
    /// template following a type the write defined, deleted (falling back
    /// to the host's) or made a template of fits the type as the write
    /// leaves it. Run once before the commit, so a write may change a type
    /// and fix what follows it in any order.
    pub(super) fn check_typing(&mut self) -> Result<(), RegistryError> {
        for (project, name) in std::mem::take(&mut self.retyped) {
            // Gone without a host type to fall back to: the deletion
            // checked nothing follows it, and a later write naming it was
            // refused as naming an unknown type.
            let Some(ty) = self.view(&project).connection_type(&name).cloned() else {
                continue;
            };
            if let Some(misfit) = self.misfits(&project, &ty).into_iter().next() {
                return Err(RegistryError::Type(misfit));
            }
        }
        Ok(())
    }

    /// The connections and templates of `project` following a type named
    /// as `ty` is that do not fit `ty`, each with its problems.
    fn misfits(&mut self, project: &ProjectId, ty: &ConnectionType) -> Vec<TypeError> {
        let snapshot = self.working_mut(project);
        let mut out = Vec::new();
        for t in snapshot
            .templates()
            .filter(|t| t.value.connection_type() == ty.name())
        {
            if let Err(e) = ty.check_template(&t.value) {
                out.push(e);
            }
        }
        for c in snapshot
            .connections()
            .filter(|c| c.value.spec().connection_type() == Some(ty.name()))
        {
            let spec = c.value.spec();
            let template = spec
                .template()
                .and_then(|n| snapshot.template(n))
                .map(|t| &*t.value);
            if let Err(e) = ty.check_connection(spec, template) {
                out.push(e);
            }
        }
        out
    }

    /// Creates or replaces a template, expecting `expected` (`None`: no
    /// such template yet). The template must fit its type, and every
    /// connection made from it must fit it (no value for a field it now
    /// locks) when the write commits: the final state is checked, as for
    /// [`Tx::put_type`]. Its new values reach those connections at once.
    pub fn put_template(
        &mut self,
        template: ConnectionTemplate,
        expected: Option<Version>,
    ) -> Result<(), RegistryError> {
        let project = template.project().clone();
        self.writable(&project)?;
        let key = RecordKey::Template(project.clone(), template.name().clone());
        self.check_version(&key, expected.map_or(Expect::Absent, Expect::Version))?;
        let Some(ty) = self
            .view(&project)
            .connection_type(template.connection_type())
            .cloned()
        else {
            return Err(RegistryError::UnknownType {
                project,
                name: template.connection_type().clone(),
            });
        };
        ty.check_template(&template)?;
        // Every connection made from it follows its type (checked when
        // each was written), so checking the type's followers checks them.
        self.retype(&project, ty.name());
        self.fence_all(&project);
        self.put(Record::Template(Arc::new(template)));
        Ok(())
    }

    /// Deletes a template, expecting `version`. Refused while connections
    /// are made from it.
    pub fn delete_template(
        &mut self,
        project: &ProjectId,
        name: &TemplateName,
        version: Version,
    ) -> Result<(), RegistryError> {
        self.writable(project)?;
        let key = RecordKey::Template(project.clone(), name.clone());
        self.check_version(&key, Expect::Version(version))?;
        let mut connections: Vec<_> = self
            .working_mut(project)
            .connections()
            .filter(|c| c.value.spec().template() == Some(name))
            .map(|c| c.value.name().clone())
            .collect();
        if !connections.is_empty() {
            connections.sort();
            return Err(RegistryError::TemplateInUse {
                project: project.clone(),
                name: name.clone(),
                connections,
            });
        }
        self.fence_all(project);
        self.delete(key);
        Ok(())
    }
}

impl Registry {
    /// The connection type `name` as `project` sees it: the project's own,
    /// else the host's.
    pub fn connection_type(&self, project: &ProjectId, name: &TypeName) -> Option<Arc<ConnectionType>> {
        match self.snapshot(project) {
            Some(snapshot) => crate::resolve::ProjectView::of(&snapshot, self.catalog.policy())
                .connection_type(name)
                .cloned(),
            None => self.catalog.policy().types().get(name.as_str()).cloned(),
        }
    }

    /// A project's own connection type and its version.
    pub fn project_type(&self, project: &ProjectId, name: &TypeName) -> Option<Versioned<Arc<ProjectType>>> {
        self.snapshot(project)?.project_type(name).cloned()
    }

    /// A template and its version.
    pub fn template(
        &self,
        project: &ProjectId,
        name: &TemplateName,
    ) -> Option<Versioned<Arc<ConnectionTemplate>>> {
        self.snapshot(project)?.template(name).cloned()
    }

    /// Defines or replaces a project's connection type (see [`Tx::put_type`]).
    pub fn put_type(
        &self,
        project: &ProjectId,
        definition: ConnectionType,
        expected: Option<Version>,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.put_type(project, definition, expected))
            .map(|(_, r)| r)
    }

    /// Deletes a project's connection type (see [`Tx::delete_type`]).
    pub fn delete_type(
        &self,
        project: &ProjectId,
        name: &TypeName,
        version: Version,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.delete_type(project, name, version))
            .map(|(_, r)| r)
    }

    /// Creates or replaces a template (see [`Tx::put_template`]).
    pub fn put_template(
        &self,
        template: ConnectionTemplate,
        expected: Option<Version>,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.put_template(template, expected))
            .map(|(_, r)| r)
    }

    /// Deletes a template (see [`Tx::delete_template`]).
    pub fn delete_template(
        &self,
        project: &ProjectId,
        name: &TemplateName,
        version: Version,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.delete_template(project, name, version))
            .map(|(_, r)| r)
    }
}
