//! A small W3C WebDriver client over HTTP (reqwest) driving Debian's
//! `chromedriver` and headless `chromium`: just the commands the browser
//! test needs (navigate, find, click, type, run script, screenshot).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, killed on drop.
pub struct Driver {
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    profiles: tempfile::TempDir,
}

/// The Chromium executable itself (Debian's `/usr/bin/chromium` is a
/// wrapper script).
fn chromium() -> PathBuf {
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.exists() {
        real.into()
    } else {
        "/usr/bin/chromium".into()
    }
}

impl Driver {
    /// Starts `chromedriver` and waits until it is ready.
    pub async fn start() -> Driver {
        assert!(
            Path::new("/usr/bin/chromedriver").exists() && chromium().exists(),
            "the browser test needs Debian's chromium and chromium-driver \
             (scripts/install-test-deps.sh installs them)"
        );
        let port = crate::harness::free_tcp_port();
        let child = tokio::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let d = Driver {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            profiles: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = d
                .http
                .get(format!("{}/status", d.base))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(v) = ready
                && v.await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                return d;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a browser (a fresh profile: a separate user) whose language
    /// is English.
    pub async fn session(&self, name: &str) -> Session<'_> {
        self.session_in(name, "en-US").await
    }

    /// Opens a browser whose language is `lang` (e.g. `ko-KR`): its UI
    /// language and the `Accept-Language` and `navigator.languages` it
    /// gives pages.
    pub async fn session_in(&self, name: &str, lang: &str) -> Session<'_> {
        let profile = self.profiles.path().join(name);
        let primary = lang.split('-').next().unwrap_or(lang);
        let accept = format!("{lang},{primary}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-extensions", "--disable-sync", "--no-first-run",
                    "--disable-component-update", "--mute-audio",
                    "--autoplay-policy=no-user-gesture-required",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--lang={lang}"),
                    format!("--accept-lang={accept}"),
                ],
                "prefs": {"intl.accept_languages": accept}
            }
        }}});
        let v = self
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        let id = v["sessionId"].as_str().expect("a session id").to_owned();
        let s = Session { driver: self, id };
        s.cmd(
            reqwest::Method::POST,
            "timeouts",
            json!({"implicit": 10_000, "script": 20_000, "pageLoad": 20_000}),
        )
        .await;
        s
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("chromedriver answers");
        let status = resp.status();
        let v: Value = resp.json().await.expect("WebDriver JSON");
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }
}

/// One browser session.
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let path = format!("/session/{}/{path}", self.id);
        let body = (method != reqwest::Method::GET).then_some(body);
        self.driver.call(method, &path, body).await
    }

    /// Loads `url`.
    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "url", json!({"url": url}))
            .await;
    }

    /// The first element matching `css` (waiting for it to exist).
    pub async fn find(&self, css: &str) -> String {
        let body = json!({"using": "css selector", "value": css});
        let v = self.cmd(reqwest::Method::POST, "element", body).await;
        v[ELEMENT].as_str().expect("an element").to_owned()
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("element/{e}/click"),
            json!({}),
        )
        .await;
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        let path = format!("element/{e}/value");
        self.cmd(reqwest::Method::POST, &path, json!({"text": text}))
            .await;
    }

    /// Runs `script` (a function body) with `args` and answers what it
    /// returns.
    pub async fn exec_with(&self, script: &str, args: Value) -> Value {
        let body = json!({"script": script, "args": args});
        self.cmd(reqwest::Method::POST, "execute/sync", body).await
    }

    /// Presses and releases each key of `keys` in turn (WebDriver key
    /// values: `" "`, `"\u{E012}"` for ←, `"\u{E014}"` for →), sent to the
    /// focused element as a user's keyboard would.
    pub async fn keys(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| {
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.cmd(reqwest::Method::POST, "actions", body).await;
    }

    /// Clicks the element matching `css` at `(dx, dy)` pixels from its
    /// centre, as a mouse would.
    pub async fn click_at(&self, css: &str, dx: i64, dy: i64) {
        let e = self.find(css).await;
        let origin = json!({ ELEMENT: e });
        let body = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "origin": origin, "x": dx, "y": dy, "duration": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0}
            ]
        }]});
        self.cmd(reqwest::Method::POST, "actions", body).await;
    }

    /// Resizes the browser window.
    pub async fn resize(&self, width: u32, height: u32) {
        let body = json!({"width": width, "height": height});
        self.cmd(reqwest::Method::POST, "window/rect", body).await;
    }

    /// Runs axe-core (vendored under `tests/vendor/axe-core`, injected
    /// here, never served by ansim) on the page; answers its violations of
    /// impact serious or critical.
    pub async fn accessibility_violations(&self) -> Vec<Value> {
        let axe = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/axe-core/axe.min.js"),
        )
        .expect("tests/vendor/axe-core/axe.min.js");
        self.exec(&format!("{axe}\n;return typeof axe;")).await;
        let v = self
            .exec_async(
                "const done = arguments[0];
                 axe.run(document, {resultTypes: ['violations']})
                   .then((r) => done(r.violations
                     .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.map((n) => n.target.join(' '))}))))
                   .catch((e) => done([{id: 'axe-failed', error: String(e)}]));",
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Runs `script` (a function body) and answers what it returns.
    pub async fn exec(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.cmd(reqwest::Method::POST, "execute/sync", body).await
    }

    /// Runs `script`, which calls `arguments[0]` with its result.
    pub async fn exec_async(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.cmd(reqwest::Method::POST, "execute/async", body).await
    }

    /// Waits (up to 10 s) until the expression `js` is true in the page.
    pub async fn wait_until(&self, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.exec(&format!("return !!({js});")).await == Value::Bool(true) {
                return;
            }
            let page = self.exec("return document.body.innerText;").await;
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {js}\npage:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self
            .cmd(reqwest::Method::GET, "screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Closes the browser.
    pub async fn close(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call(reqwest::Method::DELETE, &path, None).await;
    }
}
