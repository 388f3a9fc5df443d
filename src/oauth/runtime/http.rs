//! Every HTTP call of the runtime: a timeout, no redirects, a bounded
//! response, and what the response said (status, `Retry-After`) kept for
//! classifying failures, which `oauth2`'s error type does not carry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType};
use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse, RequestTokenError};

use crate::model::{ReauthReason, SecretValue};

/// Why an HTTP exchange failed before a response was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("timed out")]
    Timeout,
    #[error("cannot connect")]
    Connect,
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Other(String),
}

impl From<reqwest::Error> for HttpError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            HttpError::Timeout
        } else if e.is_connect() {
            HttpError::Connect
        } else {
            // Without the URL: nothing of a request reaches a message.
            HttpError::Other(e.without_url().to_string())
        }
    }
}

/// What a response said, beyond its body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meta {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

/// One exchange's HTTP client: the runtime's shared `reqwest::Client` (which
/// carries the timeouts) plus the response size bound and a place for what
/// the response said.
pub(crate) struct Exchange<'a> {
    pub client: &'a reqwest::Client,
    pub max_body: usize,
    pub meta: Mutex<Option<Meta>>,
}

impl<'a> Exchange<'a> {
    pub fn new(client: &'a reqwest::Client, max_body: usize) -> Self {
        Exchange {
            client,
            max_body,
            meta: Mutex::new(None),
        }
    }

    pub fn meta(&self) -> Option<Meta> {
        *self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads a response body, refusing one larger than `max`.
pub(crate) async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, HttpError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(HttpError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(HttpError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl<'c, 'a> AsyncHttpClient<'c> for Exchange<'a> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(HttpError::from)?;
            let response = self.client.execute(request).await?;
            let status = response.status();
            *self.meta.lock().unwrap_or_else(|e| e.into_inner()) = Some(Meta {
                status: status.as_u16(),
                retry_after: retry_after(response.headers()),
            });
            let mut builder = oauth2::http::Response::builder().status(status);
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_bounded(response, self.max_body).await?;
            builder.body(body).map_err(|e| HttpError::Other(e.to_string()))
        })
    }
}

/// What a failed token request means for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// May pass: retry with backoff (no sooner than `retry_after`).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The grant is gone: a person must authorize again.
    Reauthorize(ReauthReason),
    /// Refused for another reason (the client's configuration).
    Refused {
        error: String,
        description: Option<String>,
    },
}

/// Classifies a failed token request, never keeping a response body and
/// redacting `sent` (the secrets the request carried) and anything
/// token-like from the server's description.
pub(crate) fn classify(
    error: RequestTokenError<HttpError, BasicErrorResponse>,
    meta: Option<Meta>,
    sent: &[&SecretValue],
) -> Failure {
    let status = meta.map_or(0, |m| m.status);
    let retry_after = meta.and_then(|m| m.retry_after);
    let overloaded = status == 429 || status >= 500;
    match error {
        RequestTokenError::Request(e) => Failure::Transient {
            message: e.to_string(),
            retry_after: None,
        },
        _ if overloaded => Failure::Transient {
            message: format!("HTTP {status}"),
            retry_after,
        },
        RequestTokenError::ServerResponse(r) => {
            let description = r.error_description().map(|d| redact(d, sent));
            match r.error() {
                BasicErrorResponseType::InvalidGrant => Failure::Reauthorize(ReauthReason::InvalidGrant),
                other => Failure::Refused {
                    error: bounded_code(other.as_ref()),
                    description,
                },
            }
        }
        RequestTokenError::Parse(..) => Failure::Refused {
            error: "invalid_response".into(),
            description: Some(format!("unreadable answer (HTTP {status})")),
        },
        RequestTokenError::Other(_) => Failure::Refused {
            error: "invalid_response".into(),
            description: Some(format!("unexpected answer (HTTP {status})")),
        },
    }
}

/// An OAuth error code as sent, if it is one (ASCII letters, digits, `_`,
/// at most 64), else `invalid_response`.
pub(crate) fn bounded_code(code: &str) -> String {
    if !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        code.to_owned()
    } else {
        "invalid_response".into()
    }
}

/// The longest description kept.
const MAX_DESCRIPTION: usize = 200;
/// A run of this many token characters is taken for a token and redacted.
const TOKEN_RUN: usize = 20;

/// A server's error description made safe to show: every secret the request
/// carried and every long run of token characters (letters, digits,
/// `-._~+/=`) replaced by `[REDACTED]`, control characters dropped, at most
/// 200 characters.
pub(crate) fn redact(text: &str, sent: &[&SecretValue]) -> String {
    let mut text: String = text.chars().take(4 * MAX_DESCRIPTION).collect();
    for s in sent {
        let s = s.expose();
        if !s.is_empty() {
            text = text.replace(s, "[REDACTED]");
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= TOKEN_RUN {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || "-._~+/=".contains(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            if !c.is_control() {
                out.push(c);
            }
        }
    }
    flush(&mut run, &mut out);
    if out.chars().count() > MAX_DESCRIPTION {
        out = out.chars().take(MAX_DESCRIPTION).collect::<String>() + "...";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_lose_the_secrets_sent_and_anything_token_like() {
        let sent = SecretValue::new("rt-secret");
        let d = redact(
            "refresh token rt-secret already used; new one: eyJhbGciOiJSUzI1NiJ9.abcdefghijk",
            &[&sent],
        );
        assert!(!d.contains("rt-secret"), "{d}");
        assert!(!d.contains("eyJhbGci"), "{d}");
        assert!(d.starts_with("refresh token [REDACTED] already used"), "{d}");
        let long = redact(&"word ".repeat(200), &[]);
        assert!(long.chars().count() <= MAX_DESCRIPTION + 3);
        assert_eq!(redact("a\nb", &[]), "ab");
    }

    #[test]
    fn codes_are_kept_only_when_they_look_like_codes() {
        assert_eq!(bounded_code("invalid_client"), "invalid_client");
        assert_eq!(bounded_code("has a secret 123"), "invalid_response");
        assert_eq!(bounded_code(&"x".repeat(65)), "invalid_response");
    }
}
