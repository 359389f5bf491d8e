//! The pages in a real headless Chromium (Debian's `chromium`), against the real server.
//! Screenshots are saved to `target/screenshots/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::{Emulation, Page as Cdp};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::proxy::CuttingProxy;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// Runs blocking browser work off the async runtime that serves the app.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(work)
        .await
        .expect("browser work panicked")
}

pub(crate) async fn launch() -> Browser {
    blocking(|| {
        let flags = [
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=user-gesture-required",
            // Every page is a screen someone looks at: no throttling of background tabs.
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
        ];
        let options = LaunchOptions::default_builder()
            .path(Some(chromium_path()))
            .headless(true)
            .sandbox(false)
            .idle_browser_timeout(Duration::from_secs(120))
            .args(flags.iter().map(std::ffi::OsStr::new).collect())
            .build()
            .expect("launch options");
        Browser::new(options).expect("Chromium starts (install Debian's `chromium`)")
    })
    .await
}

/// One browser tab showing one page.
pub(crate) struct Page {
    tab: Arc<Tab>,
}

impl Page {
    pub(crate) async fn open(browser: &Browser, url: String, size: (u32, u32)) -> Page {
        Self::open_in_zone(browser, url, size, None).await
    }

    /// Opens the page with the browser's clock in this IANA time zone (a kiosk on site).
    pub(crate) async fn open_in_zone(
        browser: &Browser,
        url: String,
        (width, height): (u32, u32),
        zone: Option<&str>,
    ) -> Page {
        let zone = zone.map(str::to_owned);
        let tab = browser.new_tab().expect("a tab");
        let page = Page { tab };
        let tab = page.tab.clone();
        blocking(move || {
            tab.call_method(Emulation::SetDeviceMetricsOverride {
                width,
                height,
                device_scale_factor: 1.0,
                mobile: false,
                scale: None,
                screen_width: None,
                screen_height: None,
                position_x: None,
                position_y: None,
                dont_set_visible_size: None,
                screen_orientation: None,
                viewport: None,
                display_feature: None,
                device_posture: None,
            })
            .expect("viewport");
            if let Some(timezone_id) = zone {
                tab.call_method(Emulation::SetTimezoneOverride { timezone_id })
                    .expect("time zone");
            }
            tab.navigate_to(&url)
                .expect("navigation")
                .wait_until_navigated()
                .expect("page loads");
        })
        .await;
        page
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its JSON value.
    pub(crate) async fn eval(&self, expression: &str) -> Value {
        let tab = self.tab.clone();
        let expression = format!("(async () => JSON.stringify(await ({expression})))()");
        blocking(move || {
            let result = tab.evaluate(&expression, true).expect("script runs");
            match result.value {
                Some(Value::String(json)) => serde_json::from_str(&json).unwrap_or(Value::Null),
                _ => Value::Null,
            }
        })
        .await
    }

    /// Waits until the expression is truthy; returns its value.
    pub(crate) async fn wait_for(&self, expression: &str, within: Duration, what: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(expression).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({expression})"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn text(&self, testid: &str) -> String {
        let value = self
            .eval(&format!(
                "document.querySelector('[data-testid=\"{testid}\"]')?.textContent?.trim() ?? null"
            ))
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    pub(crate) async fn click(&self, testid: &str) {
        self.wait_for(
            &format!("!!document.querySelector('[data-testid=\"{testid}\"]:not([disabled])')"),
            WAIT,
            &format!("{testid} to be clickable"),
        )
        .await;
        let tab = self.tab.clone();
        let selector = format!("[data-testid=\"{testid}\"]");
        blocking(move || {
            // Input events go to the front tab; the others may not process them.
            tab.activate().expect("tab to the front");
            tab.find_element(&selector)
                .expect("element")
                .click()
                .expect("click");
        })
        .await;
    }

    pub(crate) async fn type_into(&self, testid: &str, text: &str) {
        let tab = self.tab.clone();
        let selector = format!("[data-testid=\"{testid}\"]");
        let text = text.to_owned();
        blocking(move || {
            tab.activate().expect("tab to the front");
            tab.wait_for_element(&selector)
                .expect("input")
                .click()
                .expect("focus");
            tab.type_str(&text).expect("typing");
        })
        .await;
    }

    pub(crate) async fn connection_state(&self) -> String {
        self.eval("document.body.dataset.connection ?? null")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) async fn wait_for_state(&self, state: &str, within: Duration) {
        self.wait_for(
            &format!("document.body.dataset.connection === '{state}'"),
            within,
            &format!("connection state {state}"),
        )
        .await;
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let tab = self.tab.clone();
        let path = screenshot_dir().join(format!("{name}.png"));
        blocking(move || {
            // Only the front tab renders frames.
            tab.activate().expect("tab to the front");
            let png = tab
                .capture_screenshot(Cdp::CaptureScreenshotFormatOption::Png, None, None, true)
                .expect("screenshot");
            std::fs::write(&path, png).expect("screenshot saved");
        })
        .await;
    }
}

pub(crate) async fn operator_console(
    base: &str,
    browser: &Browser,
    site: &Site,
    counter: usize,
) -> Page {
    let console = Page::open(
        browser,
        format!("{base}/t/{}/operator?lang=en", site.slug),
        (1366, 900),
    )
    .await;
    console.type_into("login-username", "olga").await;
    console.type_into("login-password", "olga-password").await;
    console
        .eval("(document.querySelector('[data-testid=login-submit]').requestSubmit(), true)")
        .await;
    console
        .wait_for(
            "!!document.querySelector('[data-testid=console]:not([hidden])')",
            WAIT,
            "the console",
        )
        .await;
    console
        .wait_for(
            "document.querySelectorAll('[data-testid=counter-select] option').length > 1",
            WAIT,
            "the counters",
        )
        .await;
    console
        .eval(&format!(
            "(() => {{ const s = document.querySelector('[data-testid=counter-select]'); \
             s.value = '{}'; s.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()",
            site.counters[counter]
        ))
        .await;
    console.wait_for_state("live", WAIT).await;
    console
}

#[actix_web::test]
async fn a_ticket_taken_at_the_kiosk_is_called_from_the_console_and_shown_everywhere() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 2).await;
    let browser = launch().await;

    let kiosk = Page::open(&browser, app.url("/t/clinic/totem?lang=en"), (1080, 1920)).await;
    let display = Page::open(&browser, app.url("/t/clinic/display?lang=en"), (1920, 1080)).await;
    display.wait_for_state("live", WAIT).await;
    kiosk.screenshot("totem-start").await;

    kiosk.click("service-A").await;
    kiosk
        .wait_for(
            "document.querySelector('[data-testid=ticket-code]')?.textContent.trim() === 'A001'",
            WAIT,
            "the ticket code",
        )
        .await;
    let ticket_link = kiosk
        .eval("document.querySelector('[data-testid=ticket-link]').getAttribute('href')")
        .await;
    let ticket_link = ticket_link
        .as_str()
        .expect("a link to the follow page")
        .to_owned();
    kiosk.screenshot("totem-ticket").await;

    let phone = Page::open(
        &browser,
        app.url(&format!("{ticket_link}?lang=en")),
        (390, 844),
    )
    .await;
    phone
        .wait_for(
            "document.querySelector('[data-testid=ticket-status]')?.dataset.status === 'waiting'",
            WAIT,
            "the phone page",
        )
        .await;

    let console = operator_console(&app.base, &browser, &site, 0).await;
    console
        .wait_for(
            "!!document.querySelector('[data-testid=waiting-list] [data-code=A001]')",
            WAIT,
            "A001 in the console",
        )
        .await;
    console.screenshot("operator-console").await;

    console.click("call-next").await;
    let called_at = Instant::now();
    display
        .wait_for(
            "document.querySelector('[data-testid=current-code]')?.textContent.trim() === 'A001'",
            Duration::from_secs(2),
            "the display to show A001 within 2 s",
        )
        .await;
    assert!(called_at.elapsed() <= Duration::from_secs(2));
    assert_eq!(display.text("current-counter").await, "Desk 1");
    kiosk
        .wait_for(
            "document.querySelector('[data-testid=ticket-status]')?.dataset.status === 'called'",
            Duration::from_secs(2),
            "the kiosk to show called",
        )
        .await;
    phone
        .wait_for(
            "document.querySelector('[data-testid=ticket-status]')?.dataset.status === 'called'",
            Duration::from_secs(2),
            "the phone to show called",
        )
        .await;
    assert!(phone.text("ticket-counter").await.contains("Desk 1"));
    console
        .wait_for(
            "document.querySelector('[data-testid=current-ticket]')?.dataset.code === 'A001'",
            WAIT,
            "the console's current ticket",
        )
        .await;

    display.screenshot("display-1080p").await;
    phone.screenshot("ticket-phone").await;
    console.screenshot("operator-console-calling").await;
}

#[actix_web::test]
async fn the_display_falls_back_to_polling_and_returns_to_live() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let proxy = CuttingProxy::start(&app.base).await;
    let browser = launch().await;
    let display = Page::open(
        &browser,
        proxy.url("/t/clinic/display?lang=en&poll_secs=2"),
        (1920, 1080),
    )
    .await;
    display.wait_for_state("live", WAIT).await;

    // The WebSocket is cut and cannot be re-established: the page polls instead.
    proxy.cut_websockets(true);
    display.wait_for_state("polling", WAIT).await;
    assert_eq!(
        display
            .eval("document.querySelector('[data-testid=connection]').dataset.state")
            .await,
        "polling"
    );

    app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    display
        .wait_for(
            "document.querySelector('[data-testid=current-code]')?.textContent.trim() === 'A001'",
            Duration::from_secs(6),
            "the call to show up by polling",
        )
        .await;
    assert_eq!(display.connection_state().await, "polling");

    // The link comes back; the page reconnects on its own (backoff capped at 30 s).
    proxy.cut_websockets(false);
    display
        .wait_for_state("live", Duration::from_secs(35))
        .await;
    let ticket = app.issue(&site, 0).await;
    app.act(
        &site,
        &json!({"id": app.queue(&site).await["called"][0]["id"]}),
        "cancel",
    )
    .await
    .expect(200);
    app.call_next(&site, 0).await.expect(200);
    display
        .wait_for(
            &format!(
                "document.querySelector('[data-testid=current-code]')?.textContent.trim() === '{}'",
                ticket["code"].as_str().unwrap()
            ),
            Duration::from_secs(2),
            "the next call, live",
        )
        .await;
}

#[actix_web::test]
async fn three_calls_within_a_second_are_all_shown_and_announced_in_order() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 3).await;
    for _ in 0..3 {
        app.issue(&site, 0).await;
    }
    let browser = launch().await;
    let display = Page::open(&browser, app.url("/t/clinic/display?lang=en"), (1920, 1080)).await;
    display.wait_for_state("live", WAIT).await;
    display.click("enable-sound").await;

    let started = Instant::now();
    futures_util::future::join_all((0..3).map(|desk| app.call_next(&site, desk))).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the three calls were made within a second"
    );

    // The order of the calls is their seq order.
    let events = app
        .get("/api/v1/tenants/clinic/events?since=3", None)
        .await
        .expect(200);
    let called: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "ticket_update")
        .map(|m| m["data"]["ticket"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(called.len(), 3);

    let announced = display
        .wait_for(
            "window.nextupAnnouncements?.length === 3 && window.nextupAnnouncements.map(a => a.code)",
            Duration::from_secs(20),
            "three announcements",
        )
        .await;
    assert_eq!(
        announced,
        json!(called),
        "announced in call order, none skipped"
    );
    assert_eq!(display.text("current-code").await, called[2]);
    let recent = display
        .eval("[...document.querySelectorAll('[data-testid=recent-calls] [data-code]')].map(e => e.dataset.code)")
        .await;
    let recent: Vec<String> = serde_json::from_value(recent).unwrap();
    assert!(
        recent.starts_with(&[called[1].clone(), called[0].clone()]),
        "{recent:?}"
    );
    let texts = display
        .eval("window.nextupAnnouncements.map(a => a.text)")
        .await;
    assert!(texts[0].as_str().unwrap().contains("Desk"), "{texts}");
}

#[actix_web::test]
async fn the_console_explains_a_busy_counter_and_recovers_after_finishing() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    app.issue(&site, 0).await;
    app.issue(&site, 0).await;
    let proxy = CuttingProxy::start(&app.base).await;
    let browser = launch().await;
    let console = operator_console(&proxy.base, &browser, &site, 0).await;
    console
        .wait_for(
            "document.querySelectorAll('[data-testid=waiting-list] [data-code]').length === 2",
            WAIT,
            "two waiting",
        )
        .await;

    // The console's view goes stale (no live link, slow polling) while another device calls
    // a ticket to the same desk.
    proxy.cut_websockets(true);
    console.wait_for_state("polling", WAIT).await;
    let taken = app.call_next(&site, 0).await.expect(200);

    console.click("call-next").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=message]')?.dataset.code === 'counter_busy'",
            WAIT,
            "the counter_busy message",
        )
        .await;
    let message = console.text("message").await;
    assert!(
        !message.is_empty() && !message.contains("counter_busy"),
        "a sentence, not a code: {message}"
    );
    console.screenshot("operator-console-busy").await;

    // The console learns the desk's real ticket, which the operator finishes.
    console
        .wait_for(
            &format!(
                "document.querySelector('[data-testid=current-ticket]')?.dataset.code === '{}'",
                taken["code"].as_str().unwrap()
            ),
            WAIT,
            "the desk's actual ticket",
        )
        .await;
    console.click("start").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=current-ticket]')?.dataset.status === 'serving'",
            WAIT,
            "serving",
        )
        .await;
    console.click("finish").await;
    console
        .wait_for(
            "!document.querySelector('[data-testid=current-ticket]')?.dataset.code",
            WAIT,
            "no current ticket",
        )
        .await;
    console.click("call-next").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=current-ticket]')?.dataset.code === 'A002'",
            WAIT,
            "the next ticket",
        )
        .await;
    assert_ne!(
        console
            .eval("document.querySelector('[data-testid=message]')?.dataset.code ?? ''")
            .await,
        "counter_busy"
    );
}

/// The codes of the console's waiting list, top to bottom, as one string.
const WAITING_CODES: &str = "[...document.querySelectorAll('[data-testid=waiting-list] [data-code]')]\
     .map((row) => row.dataset.code).join(',')";

#[actix_web::test]
async fn the_console_lists_waiting_tickets_in_call_order_and_places_live_ones() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    app.issue(&site, 0).await; // A001
    app.issue_priority(&site, 1).await; // B001: later, but priority
    let browser = launch().await;
    let console = operator_console(&app.base, &browser, &site, 0).await;
    let shows = |codes: &str| format!("{WAITING_CODES} === '{codes}'");
    console
        .wait_for(&shows("B001,A001"), WAIT, "the snapshot in call order")
        .await;

    // Live: a later priority ticket goes above the earlier normal one, a normal one last.
    app.issue(&site, 1).await; // B002
    app.issue_priority(&site, 0).await; // A002
    console
        .wait_for(
            &shows("B001,A002,A001,B002"),
            WAIT,
            "live tickets in call order",
        )
        .await;

    // A ticket called, cancelled and reactivated regains its place at the top, though it
    // arrives last.
    let first = app.call_next(&site, 0).await.expect(200);
    assert_eq!(first["code"], "B001");
    app.act(&site, &first, "cancel").await.expect(200);
    console
        .wait_for(&shows("A002,A001,B002"), WAIT, "B001 gone")
        .await;
    app.act(&site, &first, "reactivate").await.expect(200);
    console
        .wait_for(&shows("B001,A002,A001,B002"), WAIT, "B001 back at the top")
        .await;
    console.screenshot("operator-console-call-order").await;
}

#[actix_web::test]
async fn the_start_page_lists_the_tenants() {
    let app = TestApp::spawn().await;
    let browser = launch().await;
    let empty = Page::open(&browser, app.url("/?lang=en"), (1280, 800)).await;
    empty
        .wait_for(
            "!!document.querySelector('[data-testid=howto]')",
            WAIT,
            "the how-to",
        )
        .await;
    app.site("clinic", 1, 1).await;
    let listed = Page::open(&browser, app.url("/?lang=en"), (1280, 800)).await;
    listed
        .wait_for(
            "!!document.querySelector('[data-testid=tenant-list] [data-slug=clinic]')",
            WAIT,
            "the tenant",
        )
        .await;
    listed.screenshot("index").await;
}
