//! Connection settings: the libpq connection string and variables, the pool
//! and the deadlines.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Config;

use super::BACKEND;
use super::tls::{Roots, SslMode};
use crate::store::StoreError;

/// How a [`PostgresStore`](super::PostgresStore) reaches its database: the
/// server, TLS, the pool and the deadlines.
///
/// Made from a libpq-style connection string (key/value or URL; may be
/// empty); what it leaves out comes from the standard variables `PGHOST`,
/// `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME`,
/// `PGCONNECT_TIMEOUT`, `PGSSLMODE` and `PGSSLROOTCERT`, as libpq does.
/// Defaults: host `localhost`, user `$USER` (else `postgres`), database
/// named like the user, `sslmode=prefer`, a pool of 8 connections, 5 s to
/// connect, 30 s for a statement, 30 s to wait for a free pooled
/// connection. Its `Debug` never shows the password.
///
/// ```
/// use std::time::Duration;
/// use connective::store::{PostgresSettings, SslMode};
/// let settings = PostgresSettings::from_connection_string(
///     "postgresql://app:pa55@db.internal/connections?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
/// )?
/// .pool_size(16)
/// .statement_timeout(Duration::from_secs(5));
/// assert_eq!(settings.ssl_mode(), SslMode::VerifyFull);
/// assert_eq!(settings.server(), "db.internal:5432/connections");
/// assert!(!format!("{settings:?}").contains("pa55"));
/// # Ok::<(), connective::store::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PostgresSettings {
    pub(super) config: Config,
    pub(super) ssl_mode: SslMode,
    pub(super) roots: Roots,
    pub(super) pool_size: usize,
    pub(super) connect_timeout: Duration,
    pub(super) statement_timeout: Duration,
    pub(super) pool_timeout: Duration,
    pub(super) poll_interval: Duration,
    pub(super) notify: bool,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("server", &self.server())
            .field("user", &self.config.get_user())
            .field("ssl_mode", &self.ssl_mode)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("pool_timeout", &self.pool_timeout)
            .finish_non_exhaustive()
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn invalid(message: String) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message,
    }
}

impl PostgresSettings {
    /// Settings from a libpq-style connection string (see the type's
    /// documentation), with the `PG*` variables filling in what it leaves
    /// out. An invalid string is [`StoreError::Unavailable`], naming the
    /// option, never its value.
    pub fn from_connection_string(params: &str) -> Result<Self, StoreError> {
        let (rest, ssl) = split_ssl(params)?;
        let mut config: Config = if rest.trim().is_empty() {
            Config::new()
        } else {
            rest.parse()
                .map_err(|e: tokio_postgres::Error| invalid(format!("invalid connection string: {e}")))?
        };
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            let hosts = env_var("PGHOST").unwrap_or_else(|| "localhost".into());
            for host in hosts.split(',').filter(|h| !h.is_empty()) {
                config.host(host);
            }
        }
        if config.get_ports().is_empty()
            && let Some(ports) = env_var("PGPORT")
        {
            for port in ports.split(',') {
                let port = port
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| invalid(format!("PGPORT {port:?} is not a port number")))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env_var("PGUSER")
                .or_else(|| env_var("USER"))
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_password().is_none()
            && let Some(password) = env_var("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_dbname().is_none()
            && let Some(db) = env_var("PGDATABASE")
        {
            config.dbname(&db);
        }
        if config.get_application_name().is_none() {
            config.application_name(env_var("PGAPPNAME").unwrap_or_else(|| "connective".into()));
        }
        let connect_timeout = match config.get_connect_timeout() {
            Some(t) => *t,
            None => Duration::from_secs(
                env_var("PGCONNECT_TIMEOUT")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(5)
                    .max(1),
            ),
        };
        let ssl_mode = match ssl.mode.or_else(|| env_var("PGSSLMODE")) {
            Some(text) => text.parse().map_err(|e| invalid(format!("{e}")))?,
            None => SslMode::default(),
        };
        let roots = ssl
            .root_cert
            .or_else(|| env_var("PGSSLROOTCERT"))
            .map(|t| Roots::parse(&t))
            .unwrap_or_default();
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let mut settings = PostgresSettings {
            config,
            ssl_mode,
            roots,
            pool_size: 8,
            connect_timeout,
            statement_timeout: Duration::from_secs(30),
            pool_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            notify: true,
        };
        settings.apply();
        Ok(settings)
    }

    /// Settings from the `PG*` variables alone.
    pub fn from_env() -> Result<Self, StoreError> {
        Self::from_connection_string("")
    }

    /// Pushes the settings that live in the client's configuration there.
    fn apply(&mut self) {
        self.config
            .ssl_mode(self.ssl_mode.negotiation())
            .connect_timeout(self.connect_timeout);
    }

    /// At most `size` connections in the store's own pool (at least 1,
    /// at most [`PostgresSettings::MAX_POOL_SIZE`]; default 8). A store
    /// also keeps one more connection for `LISTEN`.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.clamp(1, Self::MAX_POOL_SIZE);
        self
    }

    /// The largest pool: PostgreSQL's own most connections (its
    /// `max_connections` is at most 262,143). A larger size (`usize::MAX`
    /// for "no limit") is this one: the pool sets room aside for its
    /// size when it is made.
    pub const MAX_POOL_SIZE: usize = 262_143;

    /// How long connecting may take (default 5 s, or `connect_timeout` /
    /// `PGCONNECT_TIMEOUT`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self.apply();
        self
    }

    /// How long the database work of one store call may take (default
    /// 30 s): past it the statement is cancelled on the server, the
    /// connection is dropped, and the call answers [`StoreError::Timeout`]
    /// (or [`StoreError::OutcomeUnknown`] if the commit itself was under
    /// way). The store's own connections also carry it as the server's
    /// `statement_timeout`.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a call may wait for a free pooled connection (default 30 s;
    /// then [`StoreError::Timeout`]).
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Replaces the `sslmode` of the string or `PGSSLMODE`.
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self.apply();
        self
    }

    /// Trusts the certificate authorities in this PEM file (replaces
    /// `sslrootcert` / `PGSSLROOTCERT`).
    pub fn root_certificates(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.roots = Roots::File(pem_file.into());
        self
    }

    /// Trusts the system's certificate authorities (`sslrootcert=system`).
    pub fn system_roots(mut self) -> Self {
        self.roots = Roots::System;
        self
    }

    /// The longest a follower sleeps between two looks at the head revision
    /// (default 200 ms). With `LISTEN/NOTIFY` it wakes as soon as a commit
    /// is announced; without, this is the latency of a follower.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Never uses `LISTEN/NOTIFY` (Postgres-wire databases without it; the
    /// store also notices that by itself).
    pub fn without_notify(mut self) -> Self {
        self.notify = false;
        self
    }

    /// The TLS mode in force.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The server and database, for messages (never the password).
    pub fn server(&self) -> String {
        let host = match (
            self.config.get_hosts().first(),
            self.config.get_hostaddrs().first(),
        ) {
            (Some(tokio_postgres::config::Host::Tcp(h)), _) => h.clone(),
            (Some(tokio_postgres::config::Host::Unix(p)), _) => p.display().to_string(),
            (None, Some(addr)) => addr.to_string(),
            (None, None) => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }

    /// The host name TLS checks the certificate against.
    pub(super) fn tls_host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => self
                .config
                .get_hostaddrs()
                .first()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "localhost".into()),
        }
    }

    /// The client configuration of the store's own pool: the server's
    /// `statement_timeout` added to the connection's options.
    pub(super) fn pool_config(&self) -> Config {
        let mut config = self.config.clone();
        // PostgreSQL counts it in milliseconds up to 2^31 - 1 and refuses
        // a connection asking for more: a longer timeout (`Duration::MAX`
        // for "no limit") leaves the server's off (0), and this store's own
        // deadline is the limit.
        let ms = match self.statement_timeout.as_millis().max(1) {
            ms if ms > i32::MAX as u128 => 0,
            ms => ms,
        };
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} -c statement_timeout={ms}"),
            _ => format!("-c statement_timeout={ms}"),
        };
        config.options(options);
        config
    }
}

/// The TLS settings a connection string holds, which the `tokio-postgres`
/// parser does not know (`verify-ca`, `verify-full`, `sslrootcert`).
#[derive(Debug, Default)]
struct SslParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a connection string (key/value
/// or URL), returning the rest unchanged.
fn split_ssl(params: &str) -> Result<(String, SslParams), StoreError> {
    let trimmed = params.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(split_url(trimmed));
    }
    split_key_values(params)
}

fn split_url(url: &str) -> (String, SslParams) {
    let mut ssl = SslParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), ssl);
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => ssl.mode = Some(percent_decode(v)),
            "sslrootcert" => ssl.root_cert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, ssl)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `key = value` pairs as libpq reads them (values in single quotes
/// with `\'` and `\\` escapes, or bare up to white space).
fn split_key_values(params: &str) -> Result<(String, SslParams), StoreError> {
    let mut ssl = SslParams::default();
    let mut kept: Vec<&str> = Vec::new();
    let bytes = params.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &params[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(invalid(format!(
                "invalid connection string: option {key:?} has no value"
            )));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(invalid(format!(
                            "invalid connection string: the value of {key:?} lacks its closing quote"
                        )));
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        match key {
            "sslmode" => ssl.mode = Some(value),
            "sslrootcert" => ssl.root_cert = Some(value),
            _ => kept.push(&params[start..i]),
        }
    }
    Ok((kept.join(" "), ssl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_come_out_of_key_values_and_urls() {
        let (rest, ssl) = split_ssl(
            "host=db user=app sslmode=verify-full password='a b\\'c' sslrootcert = '/etc/my ca.pem'",
        )
        .expect("split");
        assert_eq!(rest, "host=db user=app password='a b\\'c'");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/etc/my ca.pem"));

        let (rest, ssl) =
            split_ssl("postgresql://app@db/x?sslmode=verify-ca&application_name=a&sslrootcert=%2Fca.pem")
                .expect("split");
        assert_eq!(rest, "postgresql://app@db/x?application_name=a");
        assert_eq!(ssl.mode.as_deref(), Some("verify-ca"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/ca.pem"));

        let (rest, ssl) = split_ssl("postgres://db/x?sslmode=require").expect("split");
        assert_eq!(rest, "postgres://db/x");
        assert_eq!(ssl.mode.as_deref(), Some("require"));
    }

    #[test]
    fn a_broken_string_is_refused_without_its_values() {
        for text in [
            "host=db password='s3cr3t",
            "host=db password",
            "host=db sslmode=sometimes",
        ] {
            let e = PostgresSettings::from_connection_string(text).expect_err(text);
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        }
    }

    #[test]
    fn the_pool_carries_the_statement_timeout() {
        let settings = PostgresSettings::from_connection_string("host=db options='-c search_path=app'")
            .expect("settings")
            .statement_timeout(Duration::from_millis(1500));
        assert_eq!(
            settings.pool_config().get_options(),
            Some("-c search_path=app -c statement_timeout=1500")
        );
        for (longest, ms) in [
            (Duration::from_millis(i32::MAX as u64), i32::MAX as u128),
            (Duration::from_millis(i32::MAX as u64 + 1), 0),
            (Duration::MAX, 0),
        ] {
            let settings = PostgresSettings::from_connection_string("host=db")
                .expect("settings")
                .statement_timeout(longest);
            assert_eq!(
                settings.pool_config().get_options(),
                Some(format!("-c statement_timeout={ms}").as_str())
            );
        }
    }
}
