//! A minimal W3C WebDriver client for Debian's headless Chromium (`chromium`,
//! `chromium-driver`): start chromedriver on a free loopback port, open a session, find,
//! click, type, read. Enough to drive the console page like a person.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::block_on;
use super::registry::free_port;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        for binary in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = block_on(async {
                let response = http.get(format!("{base}/status")).send().await.ok()?;
                let value: Value = response.json().await.ok()?;
                value["value"]["ready"].as_bool()
            });
            if ready == Some(true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        // The flags keep Chromium off the network (this machine has none) and sandbox-free as
        // root; see the machine notes on headless Chromium.
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}
        });
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let created = browser.call(reqwest::Method::POST, "/session", capabilities);
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        block_on(async {
            let mut request = self.http.request(method, format!("{}{path}", self.base));
            if !body.is_null() {
                request = request.json(&body);
            }
            let response = request.send().await.expect("webdriver answers");
            response.json::<Value>().await.expect("webdriver JSON")
        })
    }

    fn session_call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn open(&self, url: &str) {
        let answer = self.session_call(reqwest::Method::POST, "/url", json!({ "url": url }));
        assert!(answer["value"].is_null(), "navigation failed: {answer}");
    }

    fn find(&self, css: &str) -> Option<String> {
        let answer = self.session_call(
            reqwest::Method::POST,
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        answer["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits up to 10 s for `css` and clicks it (re-finding it if the page re-rendered).
    pub fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(element) = self.find(css) {
                let answer = self.session_call(
                    reqwest::Method::POST,
                    &format!("/element/{element}/click"),
                    json!({}),
                );
                if answer["value"].is_null() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "could not click {css}; page:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types into the element `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).unwrap_or_else(|| panic!("no {css}"));
        let answer = self.session_call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
        assert!(answer["value"].is_null(), "typing failed: {answer}");
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.script("return document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// What `script` (a function body) returns, run in the page.
    pub fn script(&self, script: &str) -> Value {
        let answer = self.session_call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        );
        answer["value"].clone()
    }

    /// Waits up to 10 s until the page text contains `needle`.
    pub fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text();
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page never showed {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG screenshot (for looking at a failure).
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let answer = self.session_call(reqwest::Method::GET, "/screenshot", Value::Null);
        if let Some(data) = answer["value"].as_str() {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) {
                let _ = std::fs::write(path, bytes);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call(reqwest::Method::DELETE, "", Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
