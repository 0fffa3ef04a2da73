//! A real browser for tests: headless Chromium driven over W3C WebDriver
//! (chromedriver on a port it picks itself), with just the commands the
//! tests need. Every command must succeed: a failed one (a frame not
//! switched to, a click that missed) fails the test instead of passing it
//! quietly. Needs Debian's `chromium` and `chromium-driver`.

use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;

/// The W3C WebDriver key of an element reference.
pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session, ended (and chromedriver stopped) on drop.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of
    /// `width`×`height` (`phone`: emulating a phone's screen); `None`, after
    /// saying why, when they are not installed (never under CI).
    pub async fn start(width: u32, height: u32, phone: bool) -> Option<Browser> {
        let (Some(driver), Some(chromium)) =
            (crate::which("chromedriver"), crate::which("chromium"))
        else {
            crate::skip_without(
                "chromium or chromedriver",
                "apt-get install chromium chromium-driver",
            );
            return None;
        };
        // Port 0: chromedriver picks a free port and names it, so no port
        // is taken from under it between choosing and binding.
        let mut driver = tokio::process::Command::new(driver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let stdout = driver.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let started = async {
            while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .map(|rest| rest.trim_end_matches('.').to_string())
                {
                    return port;
                }
            }
            panic!("chromedriver ended without starting");
        };
        let port = tokio::time::timeout(Duration::from_secs(20), started)
            .await
            .expect("chromedriver did not start");
        // The rest of its output goes nowhere, without blocking it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().expect("a browser profile");
        let mut options = json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.path().display()),
                format!("--window-size={width},{height}"),
            ],
        });
        if phone {
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0}});
        }
        let mut browser = Browser {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            driver,
            _profile: profile,
        };
        let created = browser
            .post(
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                }}}),
            )
            .await;
        browser.session = created["value"]["sessionId"]
            .as_str()
            .expect("a browser session")
            .to_string();
        Some(browser)
    }

    /// One WebDriver command: its `value`, or the error it answered with.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("webdriver answers");
        let ok = response.status().is_success();
        let reply: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        if ok { Ok(reply) } else { Err(reply) }
    }

    /// A command that must succeed.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.send(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("webdriver {path}: {error}"))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Adds a virtual authenticator (CTAP2, built in, with resident keys
    /// and user verification that always succeeds), as a platform passkey
    /// would be; its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let reply = self
            .post(
                &self.at("/webauthn/authenticator"),
                serde_json::json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserConsenting": true,
                    "isUserVerified": true,
                }),
            )
            .await;
        reply["value"]
            .as_str()
            .expect("an authenticator id")
            .to_string()
    }

    /// `/session/ID` + `rest`.
    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn open(&self, url: &str) {
        self.post(&self.at("/url"), json!({"url": url})).await;
    }

    /// The element's id, or `None` when there is no such element.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .send(
                reqwest::Method::POST,
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        match found {
            Ok(found) => Some(
                found["value"][ELEMENT]
                    .as_str()
                    .expect("an element reference")
                    .to_string(),
            ),
            Err(error) if error["value"]["error"] == "no such element" => None,
            Err(error) => panic!("webdriver find {css}: {error}"),
        }
    }

    fn expect_element(css: &str) -> impl FnOnce() -> String + '_ {
        move || panic!("no element {css} on the page")
    }

    pub async fn click(&self, css: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(Self::expect_element(css));
        self.post(&self.at(&format!("/element/{element}/click")), json!({}))
            .await;
    }

    /// Types `text` into the element (WebDriver key codes such as `\u{E007}`,
    /// Enter, allowed).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(Self::expect_element(css));
        self.post(
            &self.at(&format!("/element/{element}/value")),
            json!({"text": text}),
        )
        .await;
    }

    /// Signs in to the web console of the server at `url` with `token`.
    pub async fn sign_in_to_console(&self, url: &str, token: &str) {
        self.open(&format!("{url}/console")).await;
        self.type_into("#token", token).await;
        self.click("form.console button[type=submit]").await;
    }

    /// Empties an input or text area.
    pub async fn clear(&self, css: &str) {
        let element = self
            .find(css)
            .await
            .unwrap_or_else(Self::expect_element(css));
        self.post(&self.at(&format!("/element/{element}/clear")), json!({}))
            .await;
    }

    /// The value of the cookie `name` of the current page (HttpOnly ones
    /// too).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let found = self
            .send(
                reqwest::Method::GET,
                &self.at(&format!("/cookie/{name}")),
                None,
            )
            .await
            .ok()?;
        found["value"]["value"].as_str().map(String::from)
    }

    /// Types `text` into whatever has the focus, key by key (a newline is
    /// Enter): for widgets such as a terminal that read keys themselves.
    pub async fn keys(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .map(|c| if c == '\n' { '\u{E007}' } else { c })
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.post(
            &self.at("/actions"),
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub async fn script(&self, script: &str) -> Value {
        self.post(
            &self.at("/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await["value"]
            .clone()
    }

    /// Runs `script` (a function body whose last argument is the callback
    /// that ends it) in the page with `args`; what it passed back.
    pub async fn script_async(&self, script: &str, args: Value) -> Value {
        self.post(
            &self.at("/execute/async"),
            json!({"script": script, "args": args}),
        )
        .await["value"]
            .clone()
    }

    /// Waits (10 s at most, then fails naming `what`) until `script`
    /// returns something true.
    pub async fn wait_until(&self, script: &str, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.script(script).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen within 10 s"
            );
            // WebDriver has no event to await in the page: poll it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current tab's handle.
    pub async fn tab(&self) -> String {
        self.get(&self.at("/window")).await["value"]
            .as_str()
            .expect("a window handle")
            .to_string()
    }

    /// Opens a new tab and switches to it; its handle.
    pub async fn new_tab(&self) -> String {
        let created = self
            .post(&self.at("/window/new"), json!({"type": "tab"}))
            .await;
        let handle = created["value"]["handle"]
            .as_str()
            .expect("a new tab")
            .to_string();
        self.switch_to(&handle).await;
        handle
    }

    pub async fn switch_to(&self, tab: &str) {
        self.post(&self.at("/window"), json!({"handle": tab})).await;
    }

    /// Resizes the browser window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.post(
            &self.at("/window/rect"),
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// A PNG of what the page shows.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.get(&self.at("/screenshot")).await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["value"].as_str().expect("a screenshot"))
            .expect("base64 PNG")
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let _ = self.send(reqwest::Method::DELETE, &self.at(""), None).await;
        let _ = self.driver.kill().await;
    }
}
