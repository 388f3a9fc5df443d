//! The runtime's tracing spans (feature `tracing`): at `DEBUG` level, each
//! names whose credentials it is about (project, connection, environment,
//! customer; or project and application) and records the outcome, `ok` or
//! the error's kind. None carries a token, secret, authorization code or
//! `state`: the fields are identifiers and fixed words only.

#[cfg(feature = "tracing")]
use super::error::OAuthError;

/// A `DEBUG` span named `$name` with the identifiers of credential key
/// `$key`, an `outcome` to record, and any further `field = value`s.
#[cfg(feature = "tracing")]
macro_rules! key_span {
    ($name:literal, $key:expr $(, $field:ident = $value:expr)* $(,)?) => {{
        let key: &$crate::model::CredentialKey = $key;
        tracing::debug_span!(
            $name,
            project = %key.project,
            connection = %key.connection,
            environment = %key.environment,
            customer = key.customer.as_ref().map_or("", |c| c.as_str()),
            outcome = tracing::field::Empty
            $(, $field = $value)*
        )
    }};
}
#[cfg(feature = "tracing")]
pub(crate) use key_span;

/// Awaits `$fut` (a future of a `Result<_, OAuthError>`) inside `$span`
/// (an expression evaluated only with the feature), then records its
/// outcome; without the feature, just awaits it.
macro_rules! traced {
    ($span:expr, $fut:expr) => {{
        #[cfg(feature = "tracing")]
        let result = $crate::oauth::runtime::trace::instrument($span, $fut).await;
        #[cfg(not(feature = "tracing"))]
        let result = $fut.await;
        result
    }};
}
pub(crate) use traced;

#[cfg(feature = "tracing")]
pub(crate) async fn instrument<T>(
    span: tracing::Span,
    fut: impl std::future::Future<Output = Result<T, OAuthError>>,
) -> Result<T, OAuthError> {
    use tracing::Instrument as _;
    let result = fut.instrument(span.clone()).await;
    span.record("outcome", outcome(&result));
    result
}

/// `ok`, or the kind of the error: a fixed word, never a message.
#[cfg(feature = "tracing")]
pub(crate) fn outcome<T>(result: &Result<T, OAuthError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    }
}

/// Records whose credentials the current span is about, once known (a
/// completion learns it from the pending authorization).
#[cfg(feature = "tracing")]
pub(crate) fn record_key(key: &crate::model::CredentialKey) {
    let span = tracing::Span::current();
    span.record("project", tracing::field::display(&key.project));
    span.record("connection", tracing::field::display(&key.connection));
    span.record("environment", tracing::field::display(&key.environment));
    span.record("customer", key.customer.as_ref().map_or("", |c| c.as_str()));
}
