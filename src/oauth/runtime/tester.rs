//! Testing a connection: a trait the host implements per target kind, two
//! built-in testers, and the result recorded in the status.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use crate::model::{Connection, CredentialKey, ReauthReason, TestResult, Timestamp};

use super::OAuthRuntime;
use super::error::OAuthError;
use super::http::read_bounded;
use super::status::Outcome;
#[cfg(feature = "tracing")]
use super::trace::key_span;
use super::trace::traced;

/// What a tester found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The connection works; a short message (no secrets).
    Passed(String),
    /// It does not work, for a reason that may pass or that the message says
    /// (no secrets).
    Failed(String),
    /// A person must authorize it again.
    NeedsReauthorization(ReauthReason),
}

/// The future a tester returns.
pub type TestFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// What a tester gets: whose credentials, the connection, and the runtime
/// (for a token).
#[derive(Debug, Clone, Copy)]
pub struct TestTarget<'a> {
    /// Whose credentials (the environment says which values: Prismatic's
    /// test credentials are the `test` environment).
    pub key: &'a CredentialKey,
    /// The connection.
    pub connection: &'a Connection,
    /// The runtime, to get an access token.
    pub runtime: &'a OAuthRuntime,
}

/// Tests a connection: an HTTP health request, a database login, ... The
/// host implements it per target kind; [`TokenTester`] and [`HttpTester`]
/// are built in. [`OAuthRuntime::test_connection`] runs one, measures it and
/// records the result in the connection's status.
pub trait ConnectionTester: Send + Sync {
    /// Runs the test.
    fn test<'a>(&'a self, target: TestTarget<'a>) -> TestFuture<'a>;
}

fn verdict_of(error: &OAuthError) -> Verdict {
    match error {
        OAuthError::NeedsReauthorization { reason, .. } => Verdict::NeedsReauthorization(*reason),
        other => Verdict::Failed(other.to_string()),
    }
}

/// Passes when an access token can be obtained (refreshed or by client
/// credentials) for the connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenTester;

impl ConnectionTester for TokenTester {
    fn test<'a>(&'a self, target: TestTarget<'a>) -> TestFuture<'a> {
        Box::pin(async move {
            match target.runtime.token(target.key).await {
                Ok(token) => Verdict::Passed(match token.expires_at() {
                    Some(at) => format!(
                        "an access token was obtained, valid for {} s",
                        at.since(Timestamp::now()).as_secs()
                    ),
                    None => "an access token was obtained".into(),
                }),
                Err(e) => verdict_of(&e),
            }
        })
    }
}

/// Passes when a GET of `url` answers with a success status (2xx), with
/// the connection's access token as a bearer token when `with_token` (the
/// runtime's HTTP client: its timeout and response bound).
#[derive(Debug, Clone)]
pub struct HttpTester {
    url: String,
    with_token: bool,
}

impl HttpTester {
    /// A reachability check of `url`, without a token.
    pub fn reachability(url: impl Into<String>) -> Self {
        HttpTester {
            url: url.into(),
            with_token: false,
        }
    }

    /// A GET of `url` with the connection's access token.
    pub fn authorized(url: impl Into<String>) -> Self {
        HttpTester {
            url: url.into(),
            with_token: true,
        }
    }
}

impl ConnectionTester for HttpTester {
    fn test<'a>(&'a self, target: TestTarget<'a>) -> TestFuture<'a> {
        Box::pin(async move {
            let mut request = target.runtime.inner.http.get(&self.url);
            if self.with_token {
                match target.runtime.token(target.key).await {
                    Ok(token) => request = request.bearer_auth(token.expose()),
                    Err(e) => return verdict_of(&e),
                }
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    // Read (bounded) so the connection is reusable; the body
                    // is not shown.
                    let _ = read_bounded(response, target.runtime.inner.config.max_response_bytes).await;
                    if status.is_success() {
                        Verdict::Passed(format!("HTTP {}", status.as_u16()))
                    } else {
                        Verdict::Failed(format!("HTTP {}", status.as_u16()))
                    }
                }
                Err(e) => Verdict::Failed(super::http::HttpError::from(e).to_string()),
            }
        })
    }
}

impl OAuthRuntime {
    /// Tests `key`'s connection with `tester`, measures it, and records the
    /// result (ok, latency, message) and the health it implies in the
    /// connection's status.
    pub async fn test_connection(
        &self,
        key: &CredentialKey,
        tester: &dyn ConnectionTester,
    ) -> Result<TestResult, OAuthError> {
        traced!(
            key_span!(
                "connective.oauth.test",
                key,
                passed = tracing::field::Empty,
                latency_ms = tracing::field::Empty
            ),
            self.test_connection_untraced(key, tester)
        )
    }

    async fn test_connection_untraced(
        &self,
        key: &CredentialKey,
        tester: &dyn ConnectionTester,
    ) -> Result<TestResult, OAuthError> {
        let connection = self.connection(key)?;
        let started = Instant::now();
        let verdict = tester
            .test(TestTarget {
                key,
                connection: &connection,
                runtime: self,
            })
            .await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (ok, message, outcome) = match verdict {
            Verdict::Passed(m) => (true, m, Outcome::Active),
            Verdict::Failed(m) => (
                false,
                m.clone(),
                Outcome::Transient {
                    message: m,
                    retry_after: None,
                },
            ),
            Verdict::NeedsReauthorization(reason) => {
                (false, reason.to_string(), Outcome::Reauthorize(reason))
            }
        };
        #[cfg(feature = "tracing")]
        {
            let span = tracing::Span::current();
            span.record("passed", ok);
            span.record("latency_ms", latency_ms);
        }
        let result = TestResult {
            ok,
            latency_ms,
            message,
            at: Timestamp::now(),
        };
        let status = self
            .record_outcome(key, &outcome, Some(result.clone()))
            .await
            .map_err(|e| OAuthError::Store {
                subject: self.subject(key),
                message: e.to_string(),
            })?;
        Ok(status.last_test().cloned().unwrap_or(result))
    }
}
