//! End to end in headless Chromium: a person at the console page requests a rollback, cannot
//! approve it themselves, a second person approves, the page shows success, and the registry's
//! `latest` has the target digest.

use crate::manifests::Ci;
use crate::support::browser::Browser;
use crate::support::daemon::{config, TestDaemon};

#[test]
fn the_console_page_drives_a_rollback_with_two_people() {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let v2 = crate::support::block_on(ci.seeder.digest_of("acme/app", "v2")).expect("v2");
    let db = ci.cli.home.path().join("state/rollbot.db");
    let daemon = TestDaemon::start(&config(&ci.registry.host, &db, ""), &db);

    let browser = Browser::start();
    browser.open(&format!("{}/console", daemon.base));
    browser.wait_for_text("You are");
    // Alice is the first user and selected by default.
    browser.type_into("#text", "/rollback app v3 crashes on start");
    browser.click("#send");
    browser.wait_for_text("rb-1 requested");
    browser.wait_for_text("Rollback rb-1 of app: waiting for approval");

    browser.click("button[data-action='approve:rb-1']");
    browser.wait_for_text("you cannot approve or reject your own request");

    browser.click("#user option[value='bob']");
    browser.click("button[data-action='approve:rb-1']");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-after-approve.png");
    browser.wait_for_text("Rollback rb-1 of app: rolled back");
    browser.wait_for_text("rb-1 done.");
    browser.screenshot(&shot);
    let page = browser.text();
    assert!(
        page.contains("@Bob approved rb-1; rolling back now."),
        "{page}"
    );
    assert!(page.contains("✓ verify"), "{page}");

    assert_eq!(
        ci.latest().as_deref(),
        Some(v2.as_str()),
        "latest has the target digest"
    );
}
