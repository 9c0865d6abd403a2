//! A real browser for the console's tests: Debian's Chromium, headless,
//! driven over WebDriver by its chromedriver (fantoccini), with a fresh
//! profile; waits on conditions the page shows, and screenshots at a
//! width.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use nur_testkit::net::free_port;
use nur_testkit::process::Process;
use serde_json::{Value, json};

/// Where Debian's packages chromium and chromium-driver put them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a condition of the page may take.
pub const T: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    _driver: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver (scripts/test.sh does)"
            );
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"));
        let mut driver = Process::spawn(cmd, log);
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--window-size=1280,860",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    driver.assert_running();
                    eprintln!("chromedriver not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "no browser session: {e}; chromedriver log:\n{}",
                    driver.log()
                ),
            }
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `js` (a function body) in the page until it returns something
    /// other than null, false or undefined, and returns that; panics after
    /// [`T`] naming `what` and what the page shows.
    pub async fn until(&self, what: &str, js: &str) -> Value {
        let start = Instant::now();
        loop {
            match self.client.execute(js, vec![]).await {
                Ok(v) if !v.is_null() && v != Value::Bool(false) => return v,
                Ok(_) => {}
                Err(e) => eprintln!("{what}: {e}"),
            }
            if start.elapsed() > T {
                let page = self
                    .client
                    .execute("return document.body.innerText", vec![])
                    .await
                    .unwrap_or_default();
                panic!("{what}: not within {T:?}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `js` once and returns its value.
    pub async fn run(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    /// Clicks the element with `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Types `text` into the element with `css` after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Screenshots of the page at desktop (1280 px) and phone (390 px)
    /// width into `dir/NAME-desktop.png` and `dir/NAME-phone.png`; the
    /// window is back at desktop width after.
    pub async fn screenshots(&self, dir: &Path, name: &str) {
        std::fs::create_dir_all(dir).unwrap();
        for (size, (w, h)) in [("phone", (390, 844)), ("desktop", (1280, 860))] {
            self.client.set_window_size(w, h).await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
            if size == "desktop" {
                // The whole page at desktop width (up to 1,800 px): a
                // desktop reader sees more than one screen of it.
                let tall = self
                    .run("return document.documentElement.scrollHeight")
                    .await;
                let tall = tall.as_u64().unwrap_or(0).min(1800) as u32;
                if tall > h {
                    self.client.set_window_size(w, tall).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{size}.png")), png).unwrap();
        }
        self.client.set_window_size(1280, 860).await.unwrap();
    }
}
