//! A PostgreSQL server for tests (features `test-kit` and `postgres`).
//!
//! **Test support:** usable by a host's own tests (it is how this crate's
//! tests reach PostgreSQL), but not a stable interface: where it finds the
//! server binaries, how it cleans up and what it prints may change in any
//! release (see "What is stable" in the [`test_kit`](super) documentation).
//! Never use it outside tests: it starts and deletes database clusters.
//!
//! [`database`] gives each test a database of its own, dropped when the test
//! ends (also when it panics), so tests run in parallel:
//!
//! - If `PGHOST` or `PGPORT` is set, the databases are created on that server
//!   (the user needs `CREATEDB`), with the other standard `PG*` variables as
//!   libpq reads them: this is how `pg_virtualenv cargo test` or a host's CI
//!   points the tests at a server.
//! - Otherwise the first call starts a throwaway cluster shared by the whole
//!   test binary: `initdb` into a temporary directory (as the `postgres` user
//!   when running as root), `pg_ctl start` on a free loopback port with its
//!   socket in that directory. It is stopped and deleted when the test binary
//!   exits, however it exits: a watchdog process does it once the binary's end
//!   of a pipe closes.
//!
//! The server binaries are looked for in `CONNECTIVE_PG_BIN`, then the newest
//! `/usr/lib/postgresql/*/bin`, then `PATH`.
//!
//! When no server can be had, [`database`] returns `None` after printing
//! `skipped: <reason>` straight to the terminal (past the test harness's
//! capture), so the test returns early without pretending it ran; under
//! `CI=true` it panics instead, failing the test.
//!
//! ```no_run
//! # use connective::store::seal::{KeyRing, SealKey};
//! # use connective::test_kit;
//! let Some(db) = test_kit::postgres::database("my_test") else { return };
//! let store = db.open(KeyRing::new(SealKey::generate("k1").unwrap())).unwrap();
//! test_kit::run_all(&store);
//! ```

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::model::ConnectionId;
use crate::store::seal::KeyRing;
use crate::store::{PostgresStore, StoreError};

/// Whether the tests run under CI (`CI=true`), where a missing server fails.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reports that PostgreSQL could not be had: panics under `CI=true`, else
/// prints `skipped: <reason>` to the terminal.
pub fn unavailable(reason: &str) {
    if under_ci() {
        panic!("PostgreSQL is required under CI=true, but none could be had: {reason}");
    }
    // Straight to the file descriptor: the test harness captures `eprintln!`.
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

/// Where a server is reached.
#[derive(Debug, Clone)]
pub struct Server {
    /// `host=... port=... user=...` (no database), or empty to use the `PG*`
    /// variables.
    params: String,
    /// The `-h/-p/-U` arguments for client tools, or empty for the `PG*`
    /// variables.
    tool_args: Vec<String>,
    bin: PathBuf,
}

/// A blocking client for tests, to look at or tamper with tables: a
/// `tokio-postgres` client on a runtime of its own (call it from plain
/// threads, not from inside a tokio runtime).
pub struct TestClient {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

/// A statement parameter of [`TestClient`].
pub type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

impl TestClient {
    /// Connects with a `tokio-postgres` configuration, without TLS.
    pub fn connect(config: &tokio_postgres::Config) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (client, connection) = runtime
            .block_on(config.connect(tokio_postgres::NoTls))
            .map_err(|e| e.to_string())?;
        runtime.spawn(connection);
        Ok(TestClient { runtime, client })
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.runtime.block_on(self.client.batch_execute(sql))
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, tokio_postgres::Error> {
        self.runtime.block_on(self.client.execute(sql, params))
    }

    /// The rows of one query.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.runtime.block_on(self.client.query(sql, params))
    }

    /// The one row of a query.
    pub fn query_one(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        self.runtime.block_on(self.client.query_one(sql, params))
    }
}

impl Server {
    fn admin(&self) -> Result<TestClient, String> {
        let params = if self.params.is_empty() {
            let db = std::env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into());
            format!("dbname={db}")
        } else {
            format!("{} dbname=postgres", self.params)
        };
        connect_plain(&params).map_err(|e| format!("cannot connect to PostgreSQL ({}): {e}", self.describe()))
    }

    fn describe(&self) -> String {
        if self.params.is_empty() {
            let host = std::env::var("PGHOST").unwrap_or_else(|_| "localhost".into());
            let port = std::env::var("PGPORT").unwrap_or_else(|_| "5432".into());
            format!("{host}:{port} from the PG* variables")
        } else {
            self.params.clone()
        }
    }
}

/// A libpq-style connection to `params`, with the `PG*` variables filling in
/// what it leaves out (the store's own rules).
fn connect_plain(params: &str) -> Result<TestClient, String> {
    // Resolve like the store does, through a throwaway parse.
    let mut config: tokio_postgres::Config =
        params.parse().map_err(|e: tokio_postgres::Error| e.to_string())?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        config.host(env("PGHOST").unwrap_or_else(|| "localhost".into()));
    }
    if config.get_ports().is_empty()
        && let Some(p) = env("PGPORT").and_then(|p| p.parse().ok())
    {
        config.port(p);
    }
    if config.get_user().is_none() {
        config.user(
            env("PGUSER")
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".into()),
        );
    }
    if config.get_password().is_none()
        && let Some(p) = env("PGPASSWORD")
    {
        config.password(p);
    }
    config.connect_timeout(std::time::Duration::from_secs(10));
    TestClient::connect(&config)
}

/// A database of one test, dropped (with `WITH (FORCE)`) when this is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    server: Server,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection string for [`PostgresStore::connect`] (the `PG*` variables
    /// fill in what it leaves out).
    pub fn connection_string(&self) -> String {
        if self.server.params.is_empty() {
            format!("dbname={}", self.name)
        } else {
            format!("{} dbname={}", self.server.params, self.name)
        }
    }

    /// Opens a store on this database.
    pub fn open(&self, keys: KeyRing) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(&self.connection_string(), keys)
    }

    /// A plain client on this database, to look at or tamper with tables.
    pub fn client(&self) -> Result<TestClient, String> {
        connect_plain(&self.connection_string())
    }

    /// The output of `pg_dump` of this database (schema and data, as SQL).
    pub fn pg_dump(&self) -> Result<Vec<u8>, String> {
        let out = Command::new(self.server.bin.join("pg_dump"))
            .args(&self.server.tool_args)
            .args(["--no-password", "-d", &self.name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_dump: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_dump failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out.stdout)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = self.server.admin() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
        }
    }
}

/// A database of its own for one test on the shared server, or `None` (after
/// [`unavailable`]) when no server can be had. `label` becomes part of the
/// database's name.
pub fn database(label: &str) -> Option<TestDatabase> {
    match try_database(label) {
        Ok(db) => Some(db),
        Err(reason) => {
            unavailable(&reason);
            None
        }
    }
}

/// Like [`database`], reporting why no database could be had.
pub fn try_database(label: &str) -> Result<TestDatabase, String> {
    let server = shared_server()?;
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let suffix = ConnectionId::random().to_string().replace('-', "");
    let name = format!("t_{clean}_{}", &suffix[..12]);
    let mut admin = server.admin()?;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .map_err(|e| format!("cannot create test database {name} on {}: {e}", server.describe()))?;
    Ok(TestDatabase {
        name,
        server: server.clone(),
    })
}

/// The server every [`database`] of this test binary lives on.
fn shared_server() -> Result<&'static Server, String> {
    static SHARED: OnceLock<Result<Server, String>> = OnceLock::new();
    static CLUSTER: Mutex<Option<PgCluster>> = Mutex::new(None);
    SHARED
        .get_or_init(|| {
            let external = ["PGHOST", "PGPORT"]
                .iter()
                .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()));
            if external {
                let server = Server {
                    params: String::new(),
                    tool_args: Vec::new(),
                    bin: find_bin()?,
                };
                server.admin()?;
                return Ok(server);
            }
            let cluster = PgCluster::start()?;
            let server = cluster.server();
            // Kept for the life of the process; its watchdog stops it at exit.
            *CLUSTER.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster);
            Ok(server)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Finds the directory of `initdb`, `pg_ctl` and `pg_dump`.
fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CONNECTIVE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, pg_ctl) in CONNECTIVE_PG_BIN, /usr/lib/postgresql/*/bin or PATH"
                .to_string()
        })
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn id_of(flag: &str, user: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("cannot run id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("there is no {user} user to run the server as (needed when running as root)"))
}

/// A throwaway PostgreSQL cluster in a temporary directory, on a loopback
/// port. Stopped and deleted on drop; a watchdog process also does that if
/// the test process dies without dropping it.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    /// Run server tools as the `postgres` user (we are root).
    as_postgres: bool,
    watchdog: Option<(Child, ChildStdin)>,
}

impl PgCluster {
    /// Creates and starts a cluster.
    pub fn start() -> Result<Self, String> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        let suffix = ConnectionId::random().to_string().replace('-', "");
        let dir = std::env::temp_dir().join(format!("connective-pg-{}", &suffix[..12]));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut cluster = PgCluster {
            dir,
            port: 0,
            bin,
            as_postgres,
            watchdog: None,
        };
        if as_postgres {
            let (uid, gid) = (id_of("-u", "postgres")?, id_of("-g", "postgres")?);
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to the postgres user: {e}", cluster.dir.display()))?;
        }
        cluster.watchdog = cluster.spawn_watchdog().ok();
        let data = cluster.data();
        let out = cluster
            .tool("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running a server tool, as `postgres` when we are root.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new(runuser());
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// A process that waits until our end of its stdin closes (we exited, or
    /// dropped the cluster), then stops the server and deletes the directory.
    fn spawn_watchdog(&self) -> Result<(Child, ChildStdin), String> {
        let pg_ctl = self.bin.join("pg_ctl");
        let prefix = if self.as_postgres {
            format!("{} -u postgres -- ", runuser().display())
        } else {
            String::new()
        };
        let script = format!(
            "cat >/dev/null; {prefix}\"$1\" stop -D \"$2\" -m immediate -w >/dev/null 2>&1; rm -rf \"$3\""
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&pg_ctl)
            .arg(self.data())
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the watchdog: {e}"))?;
        let stdin = child.stdin.take().ok_or("no watchdog stdin")?;
        Ok((child, stdin))
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster as a [`Server`] for test databases.
    pub fn server(&self) -> Server {
        Server {
            params: format!("host=127.0.0.1 port={} user=postgres", self.port),
            tool_args: vec![
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                self.port.to_string(),
                "-U".into(),
                "postgres".into(),
            ],
            bin: self.bin.clone(),
        }
    }

    /// A connection string for database `dbname` of this cluster.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={dbname}", self.port)
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        let mut admin = self.server().admin()?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| e.to_string())
    }

    /// Stops the server (fast shutdown: sessions are ended), keeping its data.
    pub fn stop(&self) -> Result<(), String> {
        let out = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Starts the (stopped) server again on the same port.
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let out = self
            .tool("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let tail: String = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ");
        Err(format!(
            "pg_ctl start on port {} failed: {} (log: {tail})",
            self.port,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// The directory holding the cluster.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` into the data directory (e.g. a TLS certificate and
    /// key, or `pg_hba.conf`), owned by the user the server runs as, with
    /// permission bits `mode`. Takes effect once the server reads it (a
    /// [`PgCluster::reload`], or a restart).
    pub fn install_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.data().join(name);
        std::fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        if self.as_postgres {
            let (uid, gid) = (id_of("-u", "postgres")?, id_of("-g", "postgres")?);
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to the postgres user: {e}", path.display()))?;
        }
        Ok(path)
    }

    /// A client on database `postgres` as the `postgres` user, over TCP
    /// without TLS.
    pub fn admin(&self) -> Result<TestClient, String> {
        self.server().admin()
    }

    /// Runs `ALTER SYSTEM SET` for each setting, then reloads the
    /// configuration (settings that need a restart do not change).
    pub fn reconfigure(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        let mut admin = self.admin()?;
        for (name, value) in settings {
            let value = value.replace('\'', "''");
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .map_err(|e| format!("cannot set {name}: {e}"))?;
        }
        self.reload()
    }

    /// Makes the server read its configuration files again.
    pub fn reload(&self) -> Result<(), String> {
        self.admin()?
            .batch_execute("SELECT pg_reload_conf()")
            .map_err(|e| format!("cannot reload the configuration: {e}"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}
