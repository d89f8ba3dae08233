//! A misbehaving registry front: a loopback HTTP/1.1 proxy to a real test registry that can
//! answer chosen requests with an error, or add headers, so tests can reproduce a registry
//! answering 500, a write failing half-way, refusing a blob mount, or Docker Hub's rate-limit
//! headers. It records every request line, so tests can count what reached a repository.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does differently from the registry behind it.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Every request gets this status and a distribution-style error body.
    FailAll(u16),
    /// `PUT /v2/<repo>/manifests/<tag>` gets this status.
    FailPutTag { tag: String, status: u16 },
    /// Every answer of the registry with status `from` is passed on with status `to` (the body
    /// as it was): a registry that answers the same error with another status.
    RewriteStatus { from: u16, to: u16 },
    /// Added to every answer.
    AddHeader { name: String, value: String },
    /// A cross-repository mount (`POST …/blobs/uploads/?mount=…&from=…`) reaches the registry
    /// without its query: it starts a plain upload (202), as a registry refusing the mount does.
    RefuseMount,
    /// `PUT /v2/<repo>/manifests/<tag>` never gets an answer and never reaches the registry
    /// (a write in flight when the daemon dies).
    HangPutTag { tag: String },
    /// `PUT /v2/<repo>/manifests/<tag>` reaches the registry only after `before`, and its answer
    /// comes `after` that: a slow registry whose writes land although the client gave up.
    DelayPutTag {
        tag: String,
        before: std::time::Duration,
        after: std::time::Duration,
    },
    /// The first `method` request whose path ends with `suffix` reaches the registry at once,
    /// and its answer comes `delay` later (a client stuck waiting on a read).
    DelayFirstAnswer {
        method: &'static str,
        suffix: String,
        delay: std::time::Duration,
        used: Arc<std::sync::atomic::AtomicBool>,
    },
    /// The first `method` request whose path ends with `suffix` reaches the registry at once,
    /// and its answer waits until `release` is set.
    HoldFirstAnswer {
        method: &'static str,
        suffix: String,
        release: Arc<std::sync::atomic::AtomicBool>,
        used: Arc<std::sync::atomic::AtomicBool>,
    },
    /// (review) A gateway in front of a slow registry: the first `PUT .../manifests/<tag>` is
    /// answered 504 at once while the registry stores it `lands_after` later; every later PUT
    /// of that tag is answered 429 with `Retry-After: 120` (write rate limit).
    GatewayTimeoutThenRateLimited {
        tag: String,
        lands_after: std::time::Duration,
        seen: Arc<std::sync::atomic::AtomicUsize>,
    },
}

#[derive(Debug)]
pub struct Proxy {
    /// `127.0.0.1:PORT`
    pub host: String,
    /// Request lines seen (`PUT /v2/acme/app/manifests/latest`).
    pub seen: Arc<Mutex<Vec<String>>>,
    rules: Arc<Mutex<Vec<Rule>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`); `upstream` may be a closed port
    /// when every request fails anyway.
    pub fn start(upstream: &str, rules: Vec<Rule>) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let host = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let upstream = format!("http://{upstream}");
        let seen_in_thread = Arc::clone(&seen);
        let rules = Arc::new(Mutex::new(rules));
        let rules_in_thread = Arc::clone(&rules);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                let http = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("client");

                // The accept loop is a task; returning from block_on drops the runtime and
                // with it every task.
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (http, rules, upstream, seen) = (
                            http.clone(),
                            Arc::clone(&rules_in_thread),
                            upstream.clone(),
                            Arc::clone(&seen_in_thread),
                        );
                        tokio::spawn(async move {
                            let _ = serve(stream, &http, &rules, &upstream, &seen).await;
                        });
                    }
                });
                let _ = (&mut stopped).await;
            });
        });
        Proxy {
            host,
            seen,
            rules,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Replaces the rules (e.g. to let a hung write through after a "crash").
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.rules.lock().expect("rules") = rules;
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    http: &reqwest::Client,
    rules: &Mutex<Vec<Rule>>,
    upstream: &str,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    loop {
        let Some((method, path, headers, body)) = read_request(&mut stream).await? else {
            return Ok(());
        };
        seen.lock().expect("seen").push(format!("{method} {path}"));
        let rules = rules.lock().expect("rules").clone();
        let hang = rules.iter().any(|rule| {
            matches!(rule, Rule::HangPutTag { tag } if method == "PUT" && path.ends_with(&format!("/manifests/{tag}")))
        });
        if hang {
            std::future::pending::<()>().await;
        }
        let gateway = rules.iter().find_map(|rule| match rule {
            Rule::GatewayTimeoutThenRateLimited {
                tag,
                lands_after,
                seen,
            } if method == "PUT" && path.ends_with(&format!("/manifests/{tag}")) => Some((
                *lands_after,
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            )),
            _ => None,
        });
        if let Some((lands_after, n)) = gateway {
            let head = if n == 0 {
                let (http, url, headers, body) = (
                    http.clone(),
                    format!("{upstream}{path}"),
                    headers.clone(),
                    body.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(lands_after).await;
                    let mut request = http.put(url);
                    for (name, value) in &headers {
                        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                            request = request.header(name.as_str(), value.as_str());
                        }
                    }
                    let _ = request.body(body).send().await;
                });
                "HTTP/1.1 504 X\r\ncontent-length: 0\r\n\r\n".to_owned()
            } else {
                "HTTP/1.1 429 X\r\nretry-after: 120\r\ncontent-length: 0\r\n\r\n".to_owned()
            };
            stream.write_all(head.as_bytes()).await?;
            stream.flush().await?;
            continue;
        }
        let delay = rules.iter().find_map(|rule| match rule {
            Rule::DelayPutTag { tag, before, after }
                if method == "PUT" && path.ends_with(&format!("/manifests/{tag}")) =>
            {
                Some((*before, *after))
            }
            Rule::DelayFirstAnswer {
                method: wanted,
                suffix,
                delay,
                used,
            } if method == *wanted
                && path.ends_with(suffix.as_str())
                && !used.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Some((std::time::Duration::ZERO, *delay))
            }
            _ => None,
        });
        if let Some((before, _)) = delay {
            tokio::time::sleep(before).await;
        }
        let failure = rules.iter().find_map(|rule| match rule {
            Rule::FailAll(status) => Some(*status),
            Rule::FailPutTag { tag, status }
                if method == "PUT" && path.ends_with(&format!("/manifests/{tag}")) =>
            {
                Some(*status)
            }
            _ => None,
        });
        let extra: Vec<(String, String)> = rules
            .iter()
            .filter_map(|rule| match rule {
                Rule::AddHeader { name, value } => Some((name.clone(), value.clone())),
                _ => None,
            })
            .collect();
        let refuse_mount = rules.iter().any(|rule| matches!(rule, Rule::RefuseMount));
        let path = match path.split_once('?') {
            Some((plain, query))
                if refuse_mount && method == "POST" && query.contains("mount=") =>
            {
                plain.to_owned()
            }
            _ => path,
        };
        let (mut status, mut out_headers, out_body) = match failure {
            Some(status) => (
                status,
                vec![("content-type".to_owned(), "application/json".to_owned())],
                br#"{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":"injected by the test proxy"}]}"#.to_vec(),
            ),
            None => {
                let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let mut request = http.request(method_value, format!("{upstream}{path}"));
                for (name, value) in &headers {
                    if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                        request = request.header(name.as_str(), value.as_str());
                    }
                }
                let response = request.body(body).send().await.map_err(std::io::Error::other)?;
                let status = response.status().as_u16();
                let headers: Vec<(String, String)> = response
                    .headers()
                    .iter()
                    .filter(|(name, _)| {
                        !matches!(name.as_str(), "transfer-encoding" | "connection" | "content-length")
                            || (method == "HEAD" && name.as_str() == "content-length")
                    })
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let bytes = response.bytes().await.map_err(std::io::Error::other)?.to_vec();
                (status, headers, bytes)
            }
        };
        if let Some(to) = rules.iter().find_map(|rule| match rule {
            Rule::RewriteStatus { from, to } if *from == status => Some(*to),
            _ => None,
        }) {
            status = to;
        }
        if let Some((_, after)) = delay {
            tokio::time::sleep(after).await;
        }
        let held = rules.iter().find_map(|rule| match rule {
            Rule::HoldFirstAnswer {
                method: wanted,
                suffix,
                release,
                used,
            } if method == *wanted
                && path.ends_with(suffix.as_str())
                && !used.swap(true, std::sync::atomic::Ordering::SeqCst) =>
            {
                Some(Arc::clone(release))
            }
            _ => None,
        });
        if let Some(release) = held {
            while !release.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        out_headers.extend(extra);
        let mut head = format!("HTTP/1.1 {status} X\r\n");
        for (name, value) in &out_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "HEAD" {
            head.push_str(&format!("content-length: {}\r\n", out_body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            stream.write_all(&out_body).await?;
        }
        stream.flush().await?;
    }
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP/1.1 request with a Content-Length body; `None` at end of stream.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((method, path, headers, body)))
}
