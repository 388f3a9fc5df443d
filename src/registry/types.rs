//! Writes of connection types and templates, and the type check every
//! connection write runs.
//!
//! # Across replicas
//!
//! A connection that follows a type (or is made from a template) and the
//! type's (or template's) deletion are different records, so, as for
//! mappings, both writes rewrite a reference fence: the stripe of the type's
//! name ([`NameStripe::of_type`]) or of the template's
//! ([`NameStripe::of_template`]). Of a connection created with a type on one
//! replica and the type deleted on another, one conflicts; retried, it is
//! checked again and refused if it would leave a connection without its
//! type. Changing a type or a template rewrites no fence: the change is
//! checked against every connection this registry knows of, and a value
//! written at the same moment on another replica under the old definition
//! is reported by the next write of that connection.

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

    /// Rewrites the fences of the type and template `spec` follows, when
    /// they differ from `old`'s (see "Across replicas" in the
    /// [module documentation](self)).
    pub(super) fn fence_typing(&mut self, spec: &ConnectionSpec, old: Option<&ConnectionSpec>) {
        let project = spec.project_id();
        if let Some(t) = spec.connection_type()
            && old.and_then(ConnectionSpec::connection_type) != Some(t)
        {
            self.fence_stripe(project, NameStripe::of_type(t));
        }
        if let Some(t) = spec.template()
            && old.and_then(ConnectionSpec::template) != Some(t)
        {
            self.fence_stripe(project, NameStripe::of_template(t));
        }
    }

    /// Rewrites the reference fence of `stripe` in `project`, once per
    /// transaction.
    pub(super) fn fence_stripe(&mut self, project: &ProjectId, stripe: NameStripe) {
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
    /// precedence over the host's of the same name. A change is refused if a
    /// connection or template of the type would no longer fit it.
    pub fn put_type(
        &mut self,
        project: &ProjectId,
        definition: ConnectionType,
        expected: Option<Version>,
    ) -> Result<(), RegistryError> {
        self.writable(project)?;
        let key = RecordKey::ConnectionType(project.clone(), definition.name().clone());
        self.check_version(&key, expected.map_or(Expect::Absent, Expect::Version))?;
        if let Some(misfit) = self.misfits(project, &definition).into_iter().next() {
            return Err(RegistryError::Type(misfit));
        }
        self.put(Record::ConnectionType(Arc::new(ProjectType::new(
            project.clone(),
            definition,
        ))));
        Ok(())
    }

    /// Deletes a connection type of `project`, expecting `version`. If the
    /// host defines a type of the same name, the project's connections and
    /// templates follow that one from then on, and must fit it; if not, the
    /// deletion is refused while any follow the type.
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
        if let Some(host) = registry.catalog.policy().types().get(name.as_str()) {
            if let Some(misfit) = self.misfits(project, host).into_iter().next() {
                return Err(RegistryError::Type(misfit));
            }
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
        self.fence_stripe(project, NameStripe::of_type(name));
        self.delete(key);
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
    /// connection made from it must still fit (no value for a field it now
    /// locks). Its new values reach those connections at once.
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
        // each was written), so `ty` is the one to check them against.
        let snapshot = self.working_mut(&project);
        for c in snapshot
            .connections()
            .filter(|c| c.value.spec().template() == Some(template.name()))
        {
            ty.check_connection(c.value.spec(), Some(&template))?;
        }
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
        self.fence_stripe(project, NameStripe::of_template(name));
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
