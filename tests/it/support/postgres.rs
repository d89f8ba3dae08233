//! A real PostgreSQL (Debian's `postgresql` package) on 127.0.0.1 for the tests: one server per
//! test process, started on first use in a temporary directory (as the `postgres` user when the
//! tests run as root: `initdb` refuses root), and one fresh database per test. A watchdog shell
//! stops the server and removes its directory when the test process is gone, however it ended.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use rollbot::config::{PostgresLocation, StoreLocation};

/// The running server: its port and data directory.
#[derive(Debug)]
struct Server {
    port: u16,
    data: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is missing: install Debian's postgresql (.ci/run does)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program` as the `postgres` user when we are root, as ourselves otherwise.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start() -> Server {
    start_with(None)
}

/// Starts a server; with `tls` (a directory holding `server.crt` and `server.key`), one that
/// speaks TLS and refuses connections without it.
fn start_with(tls: Option<&Path>) -> Server {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("rollbot-pg.")
        .tempdir()
        .expect("a directory for PostgreSQL")
        .keep();
    if is_root() {
        let chown = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(chown.success(), "chown postgres {}", dir.display());
    }
    let data = dir.join("data");
    let initdb = as_server_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "rollbot", "--no-sync"])
        .output()
        .expect("initdb runs");
    assert!(
        initdb.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    if let Some(tls) = tls {
        for file in ["server.crt", "server.key"] {
            std::fs::copy(tls.join(file), data.join(file)).expect("the server's certificate");
        }
        let hba = data.join("pg_hba.conf");
        let trusted = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!("hostnossl all all 127.0.0.1/32 reject\n{trusted}"),
        )
        .expect("pg_hba.conf");
        let mut owned = Command::new("chmod");
        owned.arg("600").arg(data.join("server.key"));
        assert!(owned.status().expect("chmod").success());
        if is_root() {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status()
                .expect("chown");
            assert!(chown.success());
        }
        options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
    }
    let started = as_server_user(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-o", &options, "start"])
        .output()
        .expect("pg_ctl runs");
    assert!(
        started.status.success(),
        "pg_ctl start: {}{}",
        String::from_utf8_lossy(&started.stderr),
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    // Stops the server when this test process is gone (a panic, a kill, the end).
    let pg_ctl = bin.join("pg_ctl");
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- {} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "{} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    // Never waited for: it outlives this process on purpose.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the watchdog");
    Server { port, data }
}

impl Server {
    /// The server's own `postgres` database, as the trusted superuser; `query` is appended
    /// (URL parameters, or nothing).
    fn admin(&self, query: &str) -> String {
        format!("postgres://rollbot@127.0.0.1:{}/postgres{query}", self.port)
    }

    /// Creates a fresh, empty database (owned by `owner`, the superuser by default), asking
    /// through [`Server::admin`] with `query`: its name.
    fn create_database(&self, query: &str, owner: Option<&str>) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let owner = owner.map(|o| format!(" OWNER {o}")).unwrap_or_default();
        psql(
            &self.admin(query),
            &format!("CREATE DATABASE {name}{owner}"),
        )
        .unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        name
    }
}

/// A fresh, empty database on the shared server, as a `postgres://` URL.
pub fn database() -> String {
    let server = SERVER.get_or_init(start);
    let name = server.create_database("", None);
    format!("postgres://rollbot@127.0.0.1:{}/{name}", server.port)
}

/// The role [`database_with_password`] creates, and its password: characters a URL must
/// escape (`@ : / % # ? &`, a space) and a quote of each kind.
pub const PASSWORD_ROLE: &str = "rollbot_pw";
pub const PASSWORD: &str = "p@ss:w/rd %41#?&x \"q\" it's";

/// A fresh database on the shared server owned by [`PASSWORD_ROLE`], which the server lets in
/// only with [`PASSWORD`] (scram-sha-256; every other role is trusted), as a `postgres://` URL
/// without the password.
pub fn database_with_password() -> String {
    static ROLE: OnceLock<()> = OnceLock::new();
    let server = SERVER.get_or_init(start);
    ROLE.get_or_init(|| {
        let quoted = PASSWORD.replace('\'', "''");
        psql(
            &server.admin(""),
            &format!("CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{quoted}'"),
        )
        .expect("the role");
        let hba = server.data.join("pg_hba.conf");
        let trusted = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{trusted}"),
        )
        .expect("pg_hba.conf");
        let reload = as_server_user(&bin_dir().join("pg_ctl"))
            .arg("-D")
            .arg(&server.data)
            .arg("reload")
            .output()
            .expect("pg_ctl runs");
        assert!(reload.status.success(), "pg_ctl reload");
        // The reload is asynchronous: wait until the role is asked for its password.
        let without = format!(
            "postgres://{PASSWORD_ROLE}@127.0.0.1:{}/postgres",
            server.port
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while psql(&without, "SELECT 1").is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never asked for a password"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let name = server.create_database("", Some(PASSWORD_ROLE));
    format!(
        "postgres://{PASSWORD_ROLE}@127.0.0.1:{}/{name}",
        server.port
    )
}

/// A server that speaks only TLS, with a certificate for 127.0.0.1 from a CA made for it
/// (openssl): a database on it as a `postgres://` URL without TLS parameters, and the CA's
/// certificate file.
pub fn tls_database() -> (String, PathBuf) {
    static TLS: OnceLock<(Server, PathBuf)> = OnceLock::new();
    let (server, ca) = TLS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rollbot-pg-tls.")
            .tempdir()
            .expect("a directory")
            .keep();
        let script = "set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout ca.key -out ca.pem -subj '/CN=rollbot test CA' \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout server.key -out server.csr -subj '/CN=127.0.0.1'
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile ext -out server.crt";
        let made = Command::new("sh")
            .args(["-c", script])
            .current_dir(&dir)
            .output()
            .expect("openssl runs (Debian's openssl)");
        assert!(
            made.status.success(),
            "certificates: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let server = start_with(Some(&dir));
        // With the server's files, removed with them when the tests end.
        let ca = server.data.join("rollbot-test-ca.pem");
        std::fs::copy(dir.join("ca.pem"), &ca).expect("the CA's certificate");
        std::fs::remove_dir_all(&dir).expect("the certificates' directory");
        (server, ca)
    });
    let name = server.create_database("?sslmode=require", None);
    (
        format!("postgres://rollbot@127.0.0.1:{}/{name}", server.port),
        ca.clone(),
    )
}

/// A fresh database as a store location.
pub fn location() -> StoreLocation {
    StoreLocation::Postgres(PostgresLocation {
        url: reqwest::Url::parse(&database()).expect("url"),
        password: None,
    })
}

/// Runs `sql` on `url` with psql, returning what it printed (unaligned, tuples only).
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bin_dir().join("psql"))
        .arg(url)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
