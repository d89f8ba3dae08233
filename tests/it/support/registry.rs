//! A real registry per test: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1,
//! with a temporary storage dir, plain or with htpasswd basic auth. Stopped on drop.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";

/// `htpasswd -Bbn bot s3cret` (distribution only accepts bcrypt entries).
pub const HTPASSWD: &str = "bot:$2y$05$sycMY4jSBrl5/lYRil5OV.bCKOJ/BHI43zNtVMh5hd6IcwUYyOWnq\n";
pub const USER: &str = "bot";
pub const PASSWORD: &str = "s3cret";

#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:PORT`, as written in image names.
    pub host: String,
    /// Storage and config; kept until the registry is stopped.
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// A registry without auth.
    pub fn start() -> TestRegistry {
        TestRegistry::spawn(false, true)
    }

    /// A registry that requires `USER` / `PASSWORD` (HTTP Basic).
    pub fn start_with_htpasswd() -> TestRegistry {
        TestRegistry::spawn(true, true)
    }

    /// A registry without auth that refuses deletes (distribution's default:
    /// `storage.delete.enabled` is false), like Docker Hub.
    pub fn start_without_delete() -> TestRegistry {
        TestRegistry::spawn(false, false)
    }

    fn spawn(htpasswd: bool, delete: bool) -> TestRegistry {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: install Debian's docker-registry package (deploy/dev/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        if htpasswd {
            std::fs::write(dir.path().join("htpasswd"), HTPASSWD).expect("write htpasswd");
        }
        // A free port can be taken by someone else between probe and bind; try a few.
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let auth = if htpasswd {
                format!(
                    "auth: {{htpasswd: {{realm: basic-realm, path: {}}}}}\n",
                    dir.path().join("htpasswd").display()
                )
            } else {
                String::new()
            };
            let config = format!(
                "version: 0.1\n\
                 log: {{level: warn, accesslog: {{disabled: true}}}}\n\
                 storage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: {delete}}}\n  maintenance: {{uploadpurging: {{enabled: false}}}}\n\
                 http: {{addr: '{host}', secret: rollbot-tests}}\n{auth}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let mut child = Command::new(BINARY)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: probably the port; try another
                }
                if TcpStream::connect(&host).is_ok() {
                    return TestRegistry {
                        child,
                        host,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let mut log = String::new();
                    let _ = std::fs::File::open(dir.path().join("registry.log"))
                        .and_then(|mut f| f.read_to_string(&mut log));
                    panic!("docker-registry did not start on {host}:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("docker-registry could not bind a port");
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}
