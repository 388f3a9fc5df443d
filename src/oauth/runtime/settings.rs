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
//!   and [`SCOPES`] (optional, space-separated).

use std::sync::Arc;

use crate::model::{
    AppOwner, AuthScheme, Connection, CredentialKey, ExternalFault, ExternalSecrets, OAuthApp, OAuthClient,
    ParamValues, SecretEntry, SecretValue, Version,
};

use super::error::{OAuthError, Subject};

/// The authorization endpoint parameter of a supplied client.
pub const AUTHORIZE_URL: &str = "AuthorizeURL";
/// The token endpoint parameter of a supplied client.
pub const TOKEN_URL: &str = "TokenURL";
/// The client ID parameter of a supplied client.
pub const CLIENT_ID: &str = "ClientID";
/// The client secret parameter of a supplied client (secret, optional).
pub const CLIENT_SECRET: &str = "ClientSecret";
/// The default scopes parameter, space-separated (optional).
pub const SCOPES: &str = "Scopes";

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

fn misconfigured(key: &CredentialKey, problem: String) -> OAuthError {
    OAuthError::Misconfigured {
        subject: Subject::Credentials(key.clone()),
        problem,
    }
}

/// A plain parameter's value for the key (rule 3), or `None`.
fn plain(connection: &Connection, key: &CredentialKey, name: &str) -> Result<Option<String>, OAuthError> {
    let Some(p) = connection.spec().param(name) else {
        return Ok(None);
    };
    match p.values() {
        ParamValues::Plain(layers) => Ok(layers
            .pick(&key.environment, key.customer.as_ref())
            .map(|(_, v)| v.clone())),
        ParamValues::Secret(_) => Err(misconfigured(
            key,
            format!("parameter {name} must be plain text, not secret"),
        )),
    }
}

/// A secret parameter's value for the key (rule 3), or `None`; a value in
/// an external store comes from the host's cache (`external`), as at
/// resolution.
fn secret(
    connection: &Connection,
    key: &CredentialKey,
    name: &str,
    external: Option<&dyn ExternalSecrets>,
) -> Result<Option<SecretValue>, OAuthError> {
    let Some(p) = connection.spec().param(name) else {
        return Ok(None);
    };
    match p.values() {
        ParamValues::Secret(layers) => match layers.pick(&key.environment, key.customer.as_ref()) {
            None => Ok(None),
            Some((_, SecretEntry::Stored(v))) => Ok(Some(v.clone())),
            Some((_, SecretEntry::External(reference))) => external
                .ok_or(ExternalFault::NoCache)
                .and_then(|view| view.lookup(reference))
                .map(|v| Some(v.value))
                .map_err(|fault| {
                    let problem = format!("parameter {name} refers to {reference}: {fault}");
                    if fault.root().is_definitive() || fault == ExternalFault::NoCache {
                        misconfigured(key, problem)
                    } else {
                        OAuthError::Unavailable {
                            subject: Subject::Credentials(key.clone()),
                            message: problem,
                            retry_at: None,
                        }
                    }
                }),
        },
        ParamValues::Plain(layers) => Ok(layers
            .pick(&key.environment, key.customer.as_ref())
            .map(|(_, v)| SecretValue::new(v.clone()))),
    }
}

/// The scopes of a `Scopes` value: split on white space.
pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// `url` if it is an HTTPS URL, or HTTP to a loopback address (RFC 8252's
/// exception, which tests and local token servers use).
pub(crate) fn check_url(key: &CredentialKey, param: &str, url: &str) -> Result<oauth2::url::Url, OAuthError> {
    parse_url(param, url).map_err(|problem| misconfigured(key, problem))
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
    connection: &Connection,
    key: &CredentialKey,
    app: impl FnOnce(&AppOwner) -> Option<(Version, Arc<OAuthApp>)>,
    external: Option<&dyn ExternalSecrets>,
) -> Result<ClientKind, OAuthError> {
    let auth = connection.spec().auth();
    let AuthScheme::OAuth2(client) = auth else {
        return Err(OAuthError::NotOAuth {
            subject: Subject::Credentials(key.clone()),
            auth,
        });
    };
    let scopes = plain(connection, key, SCOPES)?
        .map(|s| split_scopes(&s))
        .unwrap_or_default();
    match client {
        OAuthClient::Supplied => {
            let required = |name: &str| -> Result<String, OAuthError> {
                plain(connection, key, name)?.ok_or_else(|| {
                    misconfigured(
                        key,
                        format!("parameter {name} has no value for this environment and customer"),
                    )
                })
            };
            let authorize_url = required(AUTHORIZE_URL)?;
            let token_url = required(TOKEN_URL)?;
            check_url(key, AUTHORIZE_URL, &authorize_url)?;
            check_url(key, TOKEN_URL, &token_url)?;
            Ok(ClientKind::Code(CodeClient {
                authorize_url,
                token_url,
                client_id: required(CLIENT_ID)?,
                client_secret: secret(connection, key, CLIENT_SECRET, external)?,
                scopes,
            }))
        }
        _ => {
            let Some(owner) = connection.oauth_app() else {
                return Err(misconfigured(
                    key,
                    "the connection has no OAuth application".into(),
                ));
            };
            let Some((version, app)) = app(owner) else {
                return Err(misconfigured(key, format!("the {owner} does not exist")));
            };
            check_url(key, "TokenURL", app.token_url())?;
            Ok(ClientKind::App(AppClient {
                app,
                version,
                owner: owner.clone(),
                scopes,
            }))
        }
    }
}
