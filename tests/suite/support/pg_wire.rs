//! The two ends of a TCP proxy some PostgreSQL scenarios put between a store
//! and the server (a commit whose answer is lost, round trips counted on the
//! wire): where the server listens, a stream to it over TCP or a Unix
//! socket, and the connection string that goes through the proxy instead.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use connective::test_kit::postgres::TestDatabase;

/// Where the server is.
#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// A connection to the server, over TCP or a Unix socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn connect(to: &Upstream) -> std::io::Result<Stream> {
        Ok(match to {
            Upstream::Tcp(host, port) => Stream::Tcp(TcpStream::connect((host.as_str(), *port))?),
            Upstream::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        })
    }
    pub fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    pub fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        };
    }
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
    pub fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            Stream::Unix(s) => s.write_all(buf),
        }
    }
}

/// The server `db` is on, and a connection string to `db` through a proxy
/// listening on loopback port `port` (the argument of the closure).
pub fn upstream_and_proxied(db: &TestDatabase) -> (Upstream, impl Fn(u16) -> String + use<>) {
    let config: tokio_postgres::Config = db.connection_string().parse().expect("connection string");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let port = config
        .get_ports()
        .first()
        .copied()
        .or_else(|| env("PGPORT").and_then(|p| p.parse().ok()))
        .unwrap_or(5432);
    let upstream = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => Upstream::Tcp(h.clone(), port),
        Some(tokio_postgres::config::Host::Unix(dir)) => Upstream::Unix(dir.join(format!(".s.PGSQL.{port}"))),
        None => match env("PGHOST") {
            Some(h) if h.starts_with('/') => {
                Upstream::Unix(PathBuf::from(h).join(format!(".s.PGSQL.{port}")))
            }
            h => Upstream::Tcp(h.unwrap_or_else(|| "localhost".into()), port),
        },
    };
    let user = config.get_user().map(str::to_owned).or_else(|| env("PGUSER"));
    let name = db.name().to_owned();
    let proxied = move |proxy_port: u16| {
        let mut s = format!("host=127.0.0.1 port={proxy_port} dbname={name}");
        if let Some(user) = &user {
            s.push_str(&format!(" user={user}"));
        }
        s
    };
    (upstream, proxied)
}
