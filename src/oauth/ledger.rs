//! The application ledger (rule 5): what one registry write does to shared
//! OAuth applications, through the host's [`OAuthProvisioner`].
//!
//! Before the commit, the write provisions a missing application and grants
//! it new targets (a provisioner failure aborts the write); it decides which
//! applications nobody uses any more and which grants nobody needs. The
//! ledger remembers all of it, so the registry can then either *finish* (a
//! committed write: release and revoke what was decided) or *undo* (a write
//! that was not applied: release what was provisioned for it, revoke what
//! was granted for it). A write whose commit answer was lost keeps its
//! ledger until the store says which.
//!
//! The ledger reads and writes application records through [`AppBook`],
//! which the registry's transaction implements over its working snapshot.

use std::sync::Arc;

use super::{OAuthProvisioner, ProvisionError, ProvisionRequest};
use crate::model::{AppOwner, Connection, ConnectionSpec, OAuthApp, PlatformTarget, ProjectId, Target};

/// The application records as one write sees them (its transaction's
/// working snapshot).
pub(crate) trait AppBook {
    /// `owner`'s application in `project`.
    fn app(&mut self, project: &ProjectId, owner: &AppOwner) -> Option<Arc<OAuthApp>>;
    /// The connections using it.
    fn app_users(&mut self, project: &ProjectId, owner: &AppOwner) -> Vec<Arc<Connection>>;
    /// Writes an application record.
    fn put_app(&mut self, app: OAuthApp);
    /// Deletes `owner`'s application record.
    fn delete_app(&mut self, project: &ProjectId, owner: &AppOwner);
}

/// The platform integration a connection reaches, if it reaches one.
pub(crate) fn platform_target(spec: &ConnectionSpec) -> Option<&PlatformTarget> {
    match spec.target() {
        Target::Platform(t) => Some(t),
        _ => None,
    }
}

/// What the OAuth provisioner did for one write, and what it is still to do
/// once the write has committed.
#[derive(Debug, Default)]
pub(crate) struct AppLedger {
    /// Applications provisioned for the write: released again if it fails.
    provisioned: Vec<OAuthApp>,
    /// Grants issued for it on existing applications: revoked if it fails.
    granted: Vec<(OAuthApp, PlatformTarget)>,
    /// Applications to release once it has committed.
    to_release: Vec<OAuthApp>,
    /// Grants to revoke once it has committed.
    to_revoke: Vec<(OAuthApp, PlatformTarget)>,
}

impl AppLedger {
    /// Makes sure `owner`'s application exists and is granted `target`;
    /// returns whether it was provisioned now.
    pub(crate) fn ensure(
        &mut self,
        book: &mut impl AppBook,
        provisioner: &dyn OAuthProvisioner,
        project: &ProjectId,
        owner: &AppOwner,
        target: Option<&PlatformTarget>,
    ) -> Result<bool, ProvisionError> {
        let (app, fresh) = match book.app(project, owner) {
            Some(app) => (app, false),
            None => {
                let creds = provisioner.provision(&ProvisionRequest {
                    project: project.clone(),
                    owner: owner.clone(),
                })?;
                let app = OAuthApp::new(
                    project.clone(),
                    owner.clone(),
                    creds.client_id,
                    creds.client_secret,
                    creds.token_url,
                    Vec::new(),
                );
                self.provisioned.push(app.clone());
                (Arc::new(app), true)
            }
        };
        let mut grants = app.grants().to_vec();
        if let Some(target) = target
            && !grants.contains(target)
        {
            provisioner.grant(&app, target)?;
            if !fresh {
                self.granted.push(((*app).clone(), target.clone()));
            }
            grants.push(target.clone());
        }
        if fresh || grants.len() != app.grants().len() {
            book.put_app(app.with_grants(grants));
        }
        Ok(fresh)
    }

    /// After a connection left `owner`'s application: the application is
    /// released if nobody uses it any more (returns `true`), else the grants
    /// nobody needs are dropped.
    pub(crate) fn collect(&mut self, book: &mut impl AppBook, project: &ProjectId, owner: &AppOwner) -> bool {
        let Some(app) = book.app(project, owner) else {
            return false;
        };
        let users = book.app_users(project, owner);
        if users.is_empty() {
            book.delete_app(project, owner);
            self.to_release.push((*app).clone());
            return true;
        }
        let needed: Vec<PlatformTarget> = users
            .iter()
            .filter_map(|c| platform_target(c.spec()).cloned())
            .collect();
        let (keep, drop): (Vec<_>, Vec<_>) = app.grants().iter().cloned().partition(|g| needed.contains(g));
        if !drop.is_empty() {
            for g in drop {
                self.to_revoke.push(((*app).clone(), g));
            }
            book.put_app(app.with_grants(keep));
        }
        false
    }

    /// `app` with a new secret from the provisioner (rotation).
    pub(crate) fn rotated(
        provisioner: &dyn OAuthProvisioner,
        app: &OAuthApp,
    ) -> Result<OAuthApp, ProvisionError> {
        Ok(app.with_secret(provisioner.rotate(app)?))
    }

    /// The applications provisioned or granted a target for the write.
    pub(crate) fn kept(&self) -> Vec<(ProjectId, AppOwner)> {
        let mut out: Vec<(ProjectId, AppOwner)> = self
            .provisioned
            .iter()
            .chain(self.granted.iter().map(|(app, _)| app))
            .map(|app| (app.project().clone(), app.owner().clone()))
            .collect();
        out.dedup();
        out
    }

    /// Undoes what was done for a write that did not commit: releases the
    /// applications provisioned for it, revokes the grants issued for it.
    /// Returns what was released, and every failure.
    pub(crate) fn undo(
        &self,
        provisioner: &dyn OAuthProvisioner,
    ) -> (Vec<(ProjectId, AppOwner)>, Vec<ProvisionError>) {
        let (mut released, mut failures) = (Vec::new(), Vec::new());
        for app in &self.provisioned {
            match provisioner.release(app) {
                Ok(()) => released.push((app.project().clone(), app.owner().clone())),
                Err(e) => failures.push(e),
            }
        }
        for (app, target) in &self.granted {
            if let Err(e) = provisioner.revoke(app, target) {
                failures.push(e);
            }
        }
        (released, failures)
    }

    /// Finishes the work of a committed write: releases and revokes what it
    /// no longer uses. Returns what was released, and every failure.
    pub(crate) fn finish(
        &mut self,
        provisioner: &dyn OAuthProvisioner,
    ) -> (Vec<(ProjectId, AppOwner)>, Vec<ProvisionError>) {
        let (mut released, mut failures) = (Vec::new(), Vec::new());
        for app in std::mem::take(&mut self.to_release) {
            match provisioner.release(&app) {
                Ok(()) => released.push((app.project().clone(), app.owner().clone())),
                Err(e) => failures.push(e),
            }
        }
        for (app, target) in std::mem::take(&mut self.to_revoke) {
            if let Err(e) = provisioner.revoke(&app, &target) {
                failures.push(e);
            }
        }
        (released, failures)
    }
}
