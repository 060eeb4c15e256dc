//! The page in a real headless Chromium (issue 20): phone and desktop layouts with their
//! screenshots, axe-core in light and dark, a tab at a rebound host name, layout spoofing
//! checked by element geometry, a reconnect through a cut link, and notifications with the
//! unread count.

use std::time::Duration;

use serde_json::{Value, json};
use tests::proxy::Proxy;
use tests::test_config;
use tests::web::{Browser, WebClient, start_web_server};

const WAIT: Duration = Duration::from_secs(15);

/// Opens `url` and joins as `name`.
fn join(browser: &Browser, url: &str, name: &str) {
    browser.open(url);
    browser.wait_text("#status", WAIT, |s| s == "connected");
    browser.type_into("#name", &format!("{name}\n"));
    browser.wait_text("#members", WAIT, |s| s.contains(name));
}

/// No serious or critical axe-core violation, in light and in dark.
fn assert_accessible(browser: &Browser, what: &str) {
    for dark in [false, true] {
        browser.color_scheme(dark);
        let found = browser.axe_violations();
        let scheme = if dark { "dark" } else { "light" };
        assert!(found.is_empty(), "{what}, {scheme}: {found:#?}");
    }
    browser.color_scheme(false);
}

/// Writes a screenshot to docs/ when asked (CHAT_UPDATE_SCREENSHOT=1), else to a temporary
/// directory, so that a test run leaves the work tree as it was.
fn save_screenshot(browser: &Browser, file: &str) {
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"));
    let dir = if std::env::var_os("CHAT_UPDATE_SCREENSHOT").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
    } else {
        std::env::temp_dir()
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), png).unwrap();
}

/// The chat lines of the page whose text contains `needle`.
fn lines_with(browser: &Browser, needle: &str) -> usize {
    let script = format!(
        "return [...document.querySelectorAll('#messages li.chat')]\
         .filter((li) => li.textContent.includes({})).length;",
        json!(needle)
    );
    browser.eval(&script).as_u64().unwrap_or(0) as usize
}

/// A room with alice on the page and bob, bobby by now, away, and a member with a long name
/// who mentions alice.
fn a_lively_room(browser: &Browser, web: std::net::SocketAddr) -> Vec<WebClient> {
    join(browser, &format!("http://{web}/"), "alice");
    let (mut bob, _) = WebClient::join(web, "bob");
    for msg in [
        json!({"type": "chat", "text": "morning all, the build is green"}),
        json!({"type": "chat", "text": "waves", "kind": "action"}),
        json!({"type": "chat", "text": "deploy at five", "kind": "notice"}),
        json!({"type": "nick", "name": "bobby"}),
        json!({"type": "away", "message": "lunch"}),
    ] {
        bob.send(msg);
    }
    let (mut long, _) = WebClient::join(web, "Maximiliana_Wolfeschlegel");
    long.send(json!({"type": "chat", "text": "hi alice, the notes are in the wiki"}));
    browser.wait_text("#messages", WAIT, |s| {
        s.contains("the notes are in the wiki")
    });
    browser.wait_text("#members", WAIT, |s| {
        s.contains("bobby") && s.contains("away")
    });
    vec![bob, long]
}

#[test]
fn the_page_fits_a_phone_and_a_desktop_and_passes_axe_in_light_and_dark() {
    let server = start_web_server(test_config());
    let web = server.web_addr().unwrap();
    let browser = Browser::start();
    browser.viewport(1280, 800, false);
    browser.open(&format!("http://{web}/"));
    browser.wait_text("#status", WAIT, |s| s == "connected");
    assert_eq!(
        browser.text("#online-title"),
        "Members",
        "no '0 online' before joining"
    );
    assert_accessible(&browser, "before joining");

    let _others = a_lively_room(&browser, web);
    let shown = browser.text("#messages");
    for line in [
        "* bob waves",
        "bob (notice) deploy at five",
        "* bob is now bobby",
        "* bobby is away: lunch",
    ] {
        assert!(shown.contains(line), "{line:?} not in {shown}");
    }
    assert_eq!(browser.text("#online-title"), "3 online");
    let mention = browser.eval(
        "return [...document.querySelectorAll('#messages li.mention')].map((li) => li.textContent);",
    );
    assert_eq!(mention.as_array().map(Vec::len), Some(1), "{mention}");
    // A long name is cut short in the list, and the whole of it is its title.
    let long = browser.eval(
        "const b = [...document.querySelectorAll('#members bdi')]
           .find((b) => b.title === 'Maximiliana_Wolfeschlegel');
         return b ? [b.scrollWidth > b.clientWidth, getComputedStyle(b).textOverflow] : null;",
    );
    assert_eq!(long, json!([true, "ellipsis"]));
    save_screenshot(&browser, "web-desktop.png");
    assert_accessible(&browser, "desktop");

    browser.viewport(390, 844, true);
    let layout = browser.eval(
        "const d = document.documentElement, send = document.getElementById('send-button');
         const r = send.getBoundingClientRect();
         return {
           scrolls: d.scrollWidth > d.clientWidth,
           members: getComputedStyle(document.getElementById('people')).display,
           toggle: getComputedStyle(document.getElementById('members-toggle')).display !== 'none',
           send: r.width > 0 && r.right <= innerWidth,
           wrapped: [...document.querySelectorAll('#messages time')].filter((t) =>
             t.getBoundingClientRect().height > 1.8 * parseFloat(getComputedStyle(t).fontSize)).length,
           width: innerWidth,
         };",
    );
    assert_eq!(
        layout,
        json!({"scrolls": false, "members": "none", "toggle": true, "send": true,
               "wrapped": 0, "width": 390})
    );
    save_screenshot(&browser, "web-phone.png");
    assert_accessible(&browser, "phone");
    browser.click("#members-toggle");
    let open = browser.eval(
        "return [getComputedStyle(document.getElementById('people')).display,
                 document.getElementById('members-toggle').getAttribute('aria-expanded')];",
    );
    assert_eq!(open, json!(["block", "true"]));
    assert_accessible(&browser, "phone, members shown");
    // From the keyboard: Escape closes it and the focus is back on its button.
    browser.type_into("#members-toggle", "\u{E00C}");
    let closed = browser.eval(
        "return [getComputedStyle(document.getElementById('people')).display,
                 document.activeElement.id];",
    );
    assert_eq!(closed, json!(["none", "members-toggle"]));
}

#[test]
fn a_tab_at_a_rebound_host_name_gets_neither_the_page_nor_the_socket() {
    let server = start_web_server(test_config());
    let port = server.web_addr().unwrap().port();
    // evil.test resolves to this machine, as a rebinding attacker's name would.
    let browser = Browser::start_with(&["--host-resolver-rules=MAP evil.test 127.0.0.1"]);
    browser.open(&format!("http://evil.test:{port}/"));
    let page = browser.eval(
        "return [document.body ? document.body.innerText.trim() : '',
                 document.getElementById('messages') !== null];",
    );
    assert_eq!(page, json!(["421 Misdirected Request", false]));
    let socket = |host: &str| -> Value {
        browser.eval_async(&format!(
            "const done = arguments[arguments.length - 1];
             document.addEventListener('securitypolicyviolation', (e) => done('csp ' + e.violatedDirective));
             const ws = new WebSocket('ws://{host}:{port}/ws');
             ws.onopen = () => {{ done('open'); ws.close(); }};
             ws.onclose = (e) => done('closed ' + e.code);
             setTimeout(() => done('no answer'), 8000);"
        ))
    };
    assert_eq!(
        socket("evil.test"),
        json!("closed 1006"),
        "refused by the server"
    );
    // The same browser at the server's own names gets the page and its socket.
    for host in ["127.0.0.1", "localhost"] {
        browser.open(&format!("http://{host}:{port}/"));
        browser.wait_text("#status", WAIT, |s| s == "connected");
        assert_eq!(socket(host), json!("open"));
    }
}

#[test]
fn bidi_names_and_whitespace_runs_cannot_forge_a_line() {
    let server = start_web_server(test_config());
    let web = server.web_addr().unwrap();
    let browser = Browser::start();
    browser.viewport(1280, 800, false);
    join(&browser, &format!("http://{web}/"), "alice");
    let (mut hebrew, _) = WebClient::join(web, "אבג");
    hebrew.send(json!({"type": "chat", "text": "123 apples"}));
    let forged = format!(
        "ok{}05:00 PM admin: server moving, log in at http://evil.example",
        " ".repeat(160)
    );
    hebrew.send(json!({"type": "chat", "text": forged}));
    browser.wait_text("#messages", WAIT, |s| s.contains("evil.example"));
    // The name stays left of the text: "123" is not pulled into the right-to-left name.
    let boxes = browser.eval(
        "const li = [...document.querySelectorAll('#messages li.chat')]
           .find((li) => li.textContent.includes('apples'));
         const name = li.querySelector('.from').getBoundingClientRect();
         const text = li.querySelector('.text').getBoundingClientRect();
         return [li.querySelector('.from').textContent, li.querySelector('.text').textContent,
                 text.left >= name.right, Math.abs(text.top - name.top) < 4];",
    );
    assert_eq!(boxes, json!(["אבג", "123 apples", true, true]));
    // The spaces are one space, so the forged "admin" line is on the same line as "ok", inside
    // the one message block, under one time.
    let spoof = browser.eval(
        "const li = [...document.querySelectorAll('#messages li.chat')]
           .find((li) => li.textContent.includes('evil.example'));
         const text = li.querySelector('.text');
         const lineHeight = parseFloat(getComputedStyle(text).lineHeight);
         return [text.textContent.startsWith('ok 05:00 PM admin'), text.getClientRects().length,
                 text.getBoundingClientRect().height < 1.5 * lineHeight,
                 li.querySelectorAll('time').length];",
    );
    assert_eq!(spoof, json!([true, 1, true, 1]));
}

#[test]
fn a_reconnect_through_a_cut_link_shows_no_history_twice() {
    let server = start_web_server(test_config());
    let web = server.web_addr().unwrap();
    let proxy = Proxy::start(web);
    let (mut bob, _) = WebClient::join(web, "bob");
    bob.send(json!({"type": "chat", "text": "said-before-alice"}));
    let browser = Browser::start();
    join(&browser, &format!("http://{}/", proxy.addr()), "alice");
    bob.send(json!({"type": "chat", "text": "said-while-linked"}));
    browser.wait_text("#messages", WAIT, |s| s.contains("said-while-linked"));
    // The link is cut; bob talks meanwhile; then the connections die and the link comes back.
    proxy.cut();
    bob.send(json!({"type": "chat", "text": "said-while-cut"}));
    bob.send(json!({"type": "who"}));
    while bob.recv()["type"] != "members" {}
    proxy.kill_connections();
    proxy.restore();
    browser.wait_text("#messages", WAIT, |s| s.contains("said-while-cut"));
    browser.wait_text("#status", WAIT, |s| s == "connected");
    bob.send(json!({"type": "chat", "text": "said-after"}));
    browser.wait_text("#messages", WAIT, |s| s.contains("said-after"));
    for line in [
        "said-before-alice",
        "said-while-linked",
        "said-while-cut",
        "said-after",
    ] {
        assert_eq!(lines_with(&browser, line), 1, "{line} shown once");
    }
}

#[test]
fn a_hidden_tab_counts_unread_lines_and_notifies_a_mention_once_turned_on() {
    let server = start_web_server(test_config());
    let web = server.web_addr().unwrap();
    let browser = Browser::start();
    join(&browser, &format!("http://{web}/"), "alice");
    browser.set_permission("notifications", true);
    // Notifications the page makes are recorded (headless Chromium shows none).
    browser.eval(
        "window.shown = [];
         const Real = window.Notification;
         window.Notification = class extends Real {
           constructor(title, options) { super(title, options); window.shown.push([title, options.body]); }
         };
         return null;",
    );
    browser.click("#notify");
    browser.wait_text("#notify", WAIT, |s| s == "Notifying on mention");
    let (mut bob, _) = WebClient::join(web, "bob");
    browser.wait_text("#messages", WAIT, |s| s.contains("bob joined"));
    browser.minimize(true);
    assert_eq!(browser.eval("return document.hidden;"), json!(true));
    bob.send(json!({"type": "chat", "text": "anyone there?"}));
    bob.send(json!({"type": "chat", "text": "alice, lunch?"}));
    bob.send(json!({"type": "chat", "text": "talking to malice is no mention"}));
    let deadline = std::time::Instant::now() + WAIT;
    while browser.eval("return document.title;") != json!("(3) chat") {
        assert!(std::time::Instant::now() < deadline, "no unread count");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        browser.eval("return window.shown;"),
        json!([["bob", "alice, lunch?"]])
    );
    browser.minimize(false);
    while browser.eval("return document.title;") != json!("chat") {
        assert!(std::time::Instant::now() < deadline, "the count stays");
        std::thread::sleep(Duration::from_millis(50));
    }
}
