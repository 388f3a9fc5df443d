//! Where a connection's OAuth client comes from.
//!
//! - A connection on a platform-managed application ([`OAuthClient::Shared`]
//!   or [`OAuthClient::Dedicated`], rule 5) gets its tokens by client
//!   credentials with that application's `ConsumerKey`, `ConsumerSecret` and
//!   `TokenURL`.
//! - A connection with a supplied client ([`OAuthClient::Supplied`], the
//!   Prismatic shape) is authorized by a person (authorization code with
//!   PKCE) with its own parameters, resolved for the credential key's
//!   environment and customer by rule 3: [`AUTHORIZE_URL`], [`TOKEN_URL`],
//!   [`CLIENT_ID`], [`CLIENT_SECRET`] (optional: a public client has none)
//!   and [`SCOPES`] (optional, space-separated). A connection made from a
//!   template takes the values it has none of its own for from the template
//!   (the organization's client, typically).

use std::sync::Arc;

use crate::model::{
    AppOwner, AuthScheme, Connection, ConnectionTemplate, CredentialKey, ExternalFault, ExternalSecrets,
    OAuthApp, OAuthClient, SecretEntry, SecretValue, ValueRef, Version, effective_value,
};

use super::error::{OAuthError, Subject};

/// The parameters of a supplied client: one definition, the model's, which
/// the checks of connections and connection types use too
/// ([`AuthField::AUTHORIZATION_CODE`](crate::model::AuthField::AUTHORIZATION_CODE)).
pub use crate::model::{AUTHORIZE_URL, CLIENT_ID, CLIENT_SECRET, SCOPES, TOKEN_URL};

/// A supplied client, resolved.
pub(crate) struct CodeClient {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<SecretValue>,
    pub scopes: Vec<String>,
}

/// A managed application's client, resolved.
pub(crate) struct AppClient {
    pub app: Arc<OAuthApp>,
    pub version: Version,
    pub owner: AppOwner,
    pub scopes: Vec<String>,
}

/// How a credential key gets its tokens.
pub(crate) enum ClientKind {
    Code(CodeClient),
    App(AppClient),
}

/// Whose an error about `key` is: named by `connection`'s scope and name.
fn credentials(key: &CredentialKey, connection: &Connection) -> Subject {
    Subject::Credentials(
        key.clone(),
        Some((connection.scope().clone(), connection.name().clone())),
    )
}

fn misconfigured(subject: Subject, problem: String) -> OAuthError {
    OAuthError::Misconfigured { subject, problem }
}

/// A connection and the template it was made from, if any: where its
/// values come from.
pub(crate) struct Source<'a> {
    pub connection: &'a Connection,
    pub template: Option<&'a ConnectionTemplate>,
}

impl Source<'_> {
    fn value(&self, key: &CredentialKey, name: &str) -> Option<ValueRef<'_>> {
        let p = self.connection.spec().param(name)?;
        effective_value(p, self.template, &key.environment, key.customer.as_ref()).map(|(_, _, v)| v)
    }
}

/// A plain parameter's value for the key (rule 3), or `None`.
fn plain(source: &Source<'_>, key: &CredentialKey, name: &str) -> Result<Option<String>, OAuthError> {
    match source.value(key, name) {
        None => Ok(None),
        Some(ValueRef::Plain(v)) => Ok(Some(v.to_string())),
        Some(ValueRef::Secret(_)) => Err(misconfigured(
            credentials(key, source.connection),
            format!("parameter {name} must be plain text, not secret"),
        )),
    }
}

/// A secret parameter's value for the key (rule 3), or `None`; a value in
/// an external store comes from the host's cache (`external`), as at
/// resolution.
fn secret(
    source: &Source<'_>,
    key: &CredentialKey,
    name: &str,
    external: Option<&dyn ExternalSecrets>,
) -> Result<Option<SecretValue>, OAuthError> {
    match source.value(key, name) {
        None => Ok(None),
        Some(ValueRef::Secret(SecretEntry::Stored(v))) => Ok(Some(v.clone())),
        Some(ValueRef::Secret(SecretEntry::External(reference))) => external
            .ok_or(ExternalFault::NoCache)
            .and_then(|view| view.lookup(reference))
            .map(|v| Some(v.value))
            .map_err(|fault| {
                let problem = format!("parameter {name} refers to {reference}: {fault}");
                if fault.root().is_definitive() || fault == ExternalFault::NoCache {
                    misconfigured(credentials(key, source.connection), problem)
                } else {
                    OAuthError::Unavailable {
                        subject: credentials(key, source.connection),
                        message: problem,
                        retry_at: None,
                    }
                }
            }),
        Some(ValueRef::Plain(v)) => Ok(Some(SecretValue::new(v.as_str()))),
    }
}

/// The scopes of a `Scopes` value: split on white space.
pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// `url` if it is an HTTPS URL, or HTTP to a loopback address (RFC 8252's
/// exception, which tests and local token servers use).
pub(crate) fn check_url(subject: &Subject, param: &str, url: &str) -> Result<oauth2::url::Url, OAuthError> {
    parse_url(param, url).map_err(|problem| misconfigured(subject.clone(), problem))
}

/// [`check_url`] without a key: the problem as text.
pub(crate) fn parse_url(param: &str, url: &str) -> Result<oauth2::url::Url, String> {
    let parsed = oauth2::url::Url::parse(url).map_err(|e| format!("parameter {param} is not a URL ({e})"))?;
    let loopback = match parsed.host() {
        Some(oauth2::url::Host::Domain(d)) => d == "localhost",
        Some(oauth2::url::Host::Ipv4(a)) => a.is_loopback(),
        Some(oauth2::url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(format!(
            "parameter {param} must be an https URL (http only to a loopback address)"
        )),
    }
}

/// How `key`'s connection gets its tokens.
pub(crate) fn client_for(
    source: &Source<'_>,
    key: &CredentialKey,
    app: impl FnOnce(&AppOwner) -> Option<(Version, Arc<OAuthApp>)>,
    external: Option<&dyn ExternalSecrets>,
) -> Result<ClientKind, OAuthError> {
    let connection = source.connection;
    let auth = connection.spec().auth();
    let AuthScheme::OAuth2(client) = auth else {
        return Err(OAuthError::NotOAuth {
            subject: credentials(key, connection),
            auth,
        });
    };
    let scopes = plain(source, key, SCOPES)?
        .map(|s| split_scopes(&s))
        .unwrap_or_default();
    match client {
        OAuthClient::Supplied => {
            let required = |name: &str| -> Result<String, OAuthError> {
                plain(source, key, name)?.ok_or_else(|| {
                    misconfigured(
                        credentials(key, connection),
                        format!("parameter {name} has no value for this environment and customer"),
                    )
                })
            };
            let authorize_url = required(AUTHORIZE_URL)?;
            let token_url = required(TOKEN_URL)?;
            check_url(&credentials(key, connection), AUTHORIZE_URL, &authorize_url)?;
            check_url(&credentials(key, connection), TOKEN_URL, &token_url)?;
            Ok(ClientKind::Code(CodeClient {
                authorize_url,
                token_url,
                client_id: required(CLIENT_ID)?,
                client_secret: secret(source, key, CLIENT_SECRET, external)?,
                scopes,
            }))
        }
        _ => {
            let Some(owner) = connection.oauth_app() else {
                return Err(misconfigured(
                    credentials(key, connection),
                    "the connection has no OAuth application".into(),
                ));
            };
            let Some((version, app)) = app(owner) else {
                return Err(misconfigured(
                    credentials(key, connection),
                    format!("the {owner} does not exist"),
                ));
            };
            check_url(&credentials(key, connection), "TokenURL", app.token_url())?;
            Ok(ClientKind::App(AppClient {
                app,
                version,
                owner: owner.clone(),
                scopes,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ConnectionId, ConnectionSpec, ConnectionType, Environment, Field, Target, TemplateField,
    };

    /// A connection made from a template gets the client the template holds
    /// (the organization's) where it has no value of its own.
    #[test]
    fn a_supplied_client_comes_from_the_template_where_the_connection_has_none() {
        let ty = ConnectionType::builder("slack")
            .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
            .field(Field::url("AuthorizeURL").default("https://slack.com/oauth/v2/authorize"))
            .field(Field::url("TokenURL").default("https://slack.com/api/oauth.v2.access"))
            .field(Field::string("ClientID"))
            .field(Field::secret("ClientSecret"))
            .field(Field::string("Scopes").default("chat:write"))
            .build()
            .unwrap();
        let template = ConnectionTemplate::builder("acme", "acme-slack", "slack")
            .field(TemplateField::plain("ClientID").default("acme-client").hidden())
            .field(
                TemplateField::secret("ClientSecret")
                    .env("production", "acme-prod-secret")
                    .hidden(),
            )
            .field(TemplateField::plain("Scopes").default("chat:write").overridable())
            .build()
            .unwrap();
        let spec = ConnectionSpec::project("acme", "slack")
            .target(Target::external("slack"))
            .of_template(&ty, &template)
            .value("Scopes", crate::model::Layer::Default, "chat:write users:read")
            .build()
            .unwrap();
        let connection = Connection::new(ConnectionId::random(), spec, None);
        let key = CredentialKey::new(
            "acme".parse().unwrap(),
            connection.id(),
            Environment::production(),
            None,
        );
        let client = |template| {
            let source = Source {
                connection: &connection,
                template,
            };
            match client_for(&source, &key, |_| None, None) {
                Ok(ClientKind::Code(c)) => Ok(c),
                Ok(ClientKind::App(_)) => panic!("a supplied client"),
                Err(e) => Err(e),
            }
        };
        let c = client(Some(&template)).unwrap();
        assert_eq!(c.client_id, "acme-client");
        assert_eq!(c.client_secret.unwrap().expose(), "acme-prod-secret");
        assert_eq!(c.scopes, ["chat:write", "users:read"]);
        // Without its template the connection has no client.
        let err = client(None).err().unwrap();
        assert!(err.to_string().contains("ClientID"), "{err}");
    }
}
