//! End to end in headless Chromium: a person at the console page requests a rollback, cannot
//! approve it themselves, a second person approves, the page shows success, and the registry's
//! `latest` has the target digest. And what people type is shown as text, never as HTML or a
//! mention.

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

#[test]
fn the_console_page_shows_typed_markup_and_mentions_as_text() {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let db = ci.cli.home.path().join("state/rollbot.db");
    let daemon = TestDaemon::start(&config(&ci.registry.host, &db, ""), &db);

    let browser = Browser::start();
    browser.open(&format!("{}/console", daemon.base));
    browser.wait_for_text("You are");
    let reason = r#"<img src=x onerror="document.title='pwned'"> <b>bold</b> <@bob> *star* `tick`"#;
    browser.type_into("#text", &format!("/rollback app {reason}"));
    browser.click("#send");
    browser.wait_for_text("Rollback rb-1 of app: waiting for approval");
    // Rollbot's own mention names the requester; what Alice typed is shown as she typed it.
    browser.wait_for_text("@Alice asked to roll back");
    browser.wait_for_text(&format!("Reason: {reason}"));
    assert_eq!(
        browser
            .script("return document.querySelectorAll('#messages img, #messages .text b:not(.mention)').length"),
        serde_json::json!(0),
        "typed HTML became elements: {}",
        browser.text()
    );
    assert_eq!(
        browser.script("return document.querySelectorAll('#messages .mention').length > 0"),
        serde_json::json!(true)
    );
    assert_ne!(
        browser.script("return document.title"),
        serde_json::json!("pwned")
    );
}
