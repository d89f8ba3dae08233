//! Helpers for the registry module's unit tests: clients that send nothing, and a loopback
//! server that answers a script, for the request path's behaviour on the wire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use super::auth::Credentials;
use super::RegistryClient;
use crate::config::{AuthSettings, RegistrySettings};
use crate::domain::model::{RegistryHost, Repository};
use crate::lock;

fn client_at(endpoint: String, credentials: Credentials) -> RegistryClient {
    RegistryClient::new(
        &RegistryHost::parse("registry.test").expect("host"),
        &RegistrySettings {
            insecure: true,
            auth: AuthSettings::Anonymous,
            endpoint: Some(endpoint),
        },
        credentials,
        Duration::from_secs(5),
    )
    .expect("client")
}

/// A client for tests that send nothing (its endpoint is the discard port).
pub(super) fn client(credentials: Credentials) -> RegistryClient {
    client_at("127.0.0.1:9".to_owned(), credentials)
}

pub(super) fn basic() -> Credentials {
    Credentials::Basic {
        username: "bot".to_owned(),
        password: crate::secret::Secret::new("s3cret"),
        source: "a test".to_owned(),
    }
}

pub(super) fn repository() -> Repository {
    Repository::parse("acme/app").expect("repository")
}

/// A raw HTTP answer: the status line and headers (`Connection: close` is added), then `body`.
pub(super) fn answer(head: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("HTTP/1.1 {head}\r\nConnection: close\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one request (its head and its `Content-Length` body) and returns its request line.
async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> String {
    let mut request_line = String::new();
    let mut length = 0usize;
    let mut line = String::new();
    while stream.read_line(&mut line).await.unwrap_or(0) > 2 {
        if request_line.is_empty() {
            request_line = line.trim_end().to_owned();
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        line.clear();
    }
    let mut body = vec![0; length];
    let _ = stream.read_exact(&mut body).await;
    request_line
}

/// An anonymous client of a loopback server that answers each request with the next of
/// `answers` (one connection per request), and the request lines the server saw.
pub(super) async fn scripted(answers: Vec<Vec<u8>>) -> (RegistryClient, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = listener.local_addr().expect("address").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        for answer in answers {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut stream = BufReader::new(stream);
            let request_line = read_request(&mut stream).await;
            lock(&log).push(request_line);
            let _ = stream.get_mut().write_all(&answer).await;
            let _ = stream.get_mut().shutdown().await;
        }
    });
    (client_at(endpoint, Credentials::Anonymous), seen)
}

/// A client of a loopback server that reads every request as it comes (each on its own
/// connection, all at once) but answers none (`201 Created`) until `gate` has a permit for it;
/// the request lines seen so far.
pub(super) async fn holding() -> (
    RegistryClient,
    Arc<Mutex<Vec<String>>>,
    Arc<tokio::sync::Semaphore>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = listener.local_addr().expect("address").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (log, held) = (Arc::clone(&seen), Arc::clone(&gate));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, held) = (Arc::clone(&log), Arc::clone(&held));
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let request_line = read_request(&mut stream).await;
                lock(&log).push(request_line);
                if let Ok(permit) = held.acquire().await {
                    permit.forget();
                }
                let answer = answer("201 Created", b"");
                let _ = stream.get_mut().write_all(&answer).await;
                let _ = stream.get_mut().shutdown().await;
            });
        }
    });
    (client_at(endpoint, Credentials::Anonymous), seen, gate)
}
