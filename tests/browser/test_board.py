"""The staff day board (/board) in a real browser: headless Chromium (Debian's package, driven
by Playwright; never a downloaded browser) against a real HTTP server on the demo clinic.

Runs on both test databases: the server is werkzeug's, in a thread, serving the session's app
(so the SQLite pass and the PostgreSQL pass each drive the board on their own database).
Without /usr/bin/chromium the browser test is skipped locally and fails when CI=true.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from service.demo import DEMO_KEYS, seed_demo
from service.extensions import unit_of_work
from service.resources.board.routes import CONTENT_SECURITY_POLICY
from tests.factories import clinic_today
from tests.http_server import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHOENIX = ZoneInfo("America/Phoenix")
STAFF = {"Authorization": f"Bearer {DEMO_KEYS['staff']}"}


# The page itself (no browser needed) ------------------------------------------------------


def test_board_page_is_served_locally_private_and_strict(client):
    page = client.get("/board")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<title>Day board</title>" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    csp = page.headers["Content-Security-Policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assets = re.findall(r'(?:src|href)="(/board/static/[^"]+)"', html)
    assert {Path(a).name for a in assets} == {"board.css", "app.js", "favicon.svg"}
    for name in ("app.js", "api.js", "time.js", "rules.js", "timeline.js", "needs.js",
                 "course.js", "board.css", "favicon.svg"):
        asset = client.get(f"/board/static/{name}")
        assert asset.status_code == 200 and len(asset.data) > 200, name
        assert asset.headers["Cache-Control"] == "no-store", name
        assert asset.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        text = asset.get_data(as_text=True)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name
        assert "innerHTML" not in text and "eval(" not in text, name
    assert client.get("/board/static/../routes.py").status_code == 404
    assert client.get("/board/static/missing.js").status_code == 404


# In the browser ---------------------------------------------------------------------------


def _chromium_or_skip() -> None:
    if os.path.exists(CHROMIUM):
        return
    message = (f"{CHROMIUM} is missing: install Debian's chromium package "
               "(apt-get install -y chromium) to run the board's browser test")
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def demo_server(app) -> Iterator[str]:
    """The demo clinic behind a real HTTP server on a free loopback port."""
    with app.app_context():
        assert seed_demo(unit_of_work, today=clinic_today())
    with serving(app, "board-server") as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _local(instant: str) -> datetime:
    return datetime.fromisoformat(instant).astimezone(PHOENIX)


def _demo_day(client) -> dict:
    """What the board should show, read from the API the way a person would check it."""
    get = lambda path: client.get(path, headers=STAFF).get_json()  # noqa: E731
    types = {t["id"]: t["code"] for t in get("/api/v1/service-types")}
    locations = {loc["kind"]: loc for loc in get("/api/v1/locations")}
    providers = {p["name"]: p for p in get("/api/v1/providers")}
    patients = {p["last_name"]: p for p in get("/api/v1/patients")}
    bookings = {(types[b["service_type_id"]], b["status"]): b for b in get("/api/v1/bookings")}
    return {"clinic": locations["clinic"], "virtual": locations["virtual"],
            "whitfield": providers["Dr. Elena Whitfield"], "patients": patients,
            "iv": bookings[("iv-infusion", "booked")],
            "consultation": bookings[("consultation", "booked")],
            "esketamine": bookings[("esketamine", "fulfilled")]}


def _lane_block(page, location: dict, lane: str, booking: dict):
    return page.locator(f'[data-location="{location["id"]}"] [data-lane="{lane}"] '
                        f'.visit[data-booking-id="{booking["id"]}"]')


def _show_date(page, day: str) -> None:
    page.fill("#board-date", day)
    page.wait_for_function("d => document.getElementById('day-title').dataset.date === d", arg=day)


_POSITIONS = """([location, selector, hours]) => {
    // Measured in one go: the board may redraw (a name arrives) between two calls.
    const section = document.querySelector(`[data-location="${location}"]`);
    const ticks = [...section.querySelectorAll('.tick')];
    const centre = (h) => { const r = ticks.find(t => t.textContent === h).getBoundingClientRect();
                            return r.left + r.width / 2; };
    return [section.querySelector(selector).getBoundingClientRect().left, ...hours.map(centre)];
}"""


def _assert_at(page, location: dict, selector: str, hour: str, fraction: float = 0.0) -> None:
    """The element's left edge sits on ``hour`` (plus ``fraction`` of the next hour) on its
    location's axis."""
    following = f"{int(hour[:2]) + 1:02d}:00"
    left, at, after = page.evaluate(_POSITIONS, [location["id"], selector, [hour, following]])
    assert abs(left - (at + (after - at) * fraction)) <= 2, (left, at, after)


def test_the_day_board_in_chromium(app, client, demo_server, browser, tmp_path):
    day = _demo_day(client)
    rivera = day["patients"]["Rivera"]
    # Jordan Rivera fills in his PHQ-9 from home and reports thoughts of self-harm (item 9):
    # the service raises an urgent alert for the staff.
    patient_key = {"Authorization": f"Bearer {DEMO_KEYS['patient']}"}
    raised = client.post(f"/api/v1/patients/{rivera['id']}/assessments", headers=patient_key,
                         json={"instrument": "PHQ-9", "answers": [2, 2, 1, 2, 1, 2, 1, 1, 1]})
    assert raised.status_code == 201 and raised.get_json()["urgent"] is True
    open_alerts = client.get("/api/v1/alerts", headers=STAFF).get_json()
    assert open_alerts and all(not a["acknowledged_at"] for a in open_alerts)

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    page = context.new_page()
    problems: list[str] = []
    # (Chromium logs every refused request; a 403 is the answer a provider's key gets for
    # the staff-only license report, which the board shows as "not available to this key".)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and "status of 403" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(10_000)

    page.goto(f"{demo_server}/board")
    assert page.title() == "Day board"
    page.fill("#api-key", DEMO_KEYS["patient"])
    page.click("#sign-in-form button[type=submit]")
    assert "staff or provider" in page.inner_text("#sign-in-error")
    page.fill("#api-key", DEMO_KEYS["staff"])
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector(f'[data-location="{day["clinic"]["id"]}"]')
    assert page.evaluate("sessionStorage.getItem('board.apiKey')") == DEMO_KEYS["staff"]
    assert page.evaluate("localStorage.length") == 0

    # The IV infusion: chair 1 at the clinic, 10:00, recovery to 11:45, booked, Chris N.
    iv_start = _local(day["iv"]["start"])
    _show_date(page, iv_start.date().isoformat())
    chairs = page.locator(f'[data-location="{day["clinic"]["id"]}"] .lane-chair .lane-label')
    assert chairs.all_inner_texts() == ["Chair 1", "Chair 2", "Chair 3", "Chair 4"]
    iv = _lane_block(page, day["clinic"], f"chair-{day['iv']['chair_number']}", day["iv"])
    iv.wait_for()
    assert (iv.get_attribute("data-start"), iv.get_attribute("data-until")) == ("10:00", "11:45")
    assert iv.get_attribute("data-status") == "booked"
    page.wait_for_function(  # the patient's name has arrived
        "() => !document.querySelector('.visit-who').textContent.includes('\u2026')")
    assert "Chris N." in iv.inner_text() and "IV infusion" in iv.inner_text()
    assert page.locator(".visit").count() == 1
    _assert_at(page, day["clinic"], f'.visit[data-booking-id="{day["iv"]["id"]}"]', "10:00")

    # The needs panel: the open alert (urgent, first), the REMS form, the expiring license.
    alerts = page.locator('[data-needs="alerts"] li')
    alerts.first.wait_for()
    assert alerts.count() == len(open_alerts)
    expect(alerts.first).to_contain_text("Jordan R.")
    first_alert = alerts.first.text_content()
    assert "Urgent" in first_alert and "PHQ-9 item 9" in first_alert
    expect(page.locator('[data-needs="tasks"]')).to_contain_text("Chris N.")
    expect(page.locator('[data-needs="licenses"]')).to_contain_text("Priya Natarajan")
    alerts.first.locator("a[data-record]").click()
    page.wait_for_function(
        "() => document.getElementById('record-body').textContent.includes('phq9_item_9')")
    # Closing hands the focus back to the alert's link. The dialog's close event is queued
    # after the dialog closes: wait until it has run (a listener added after the board's own
    # runs after it), so nothing left over can touch the focus once the test moves it.
    page.evaluate("() => { window.recordClosed = false;"
                  " document.getElementById('record-dialog').addEventListener("
                  "'close', () => { window.recordClosed = true; }, {once: true}); }")
    page.keyboard.press("Escape")
    page.wait_for_function("() => window.recordClosed")
    assert page.evaluate("document.activeElement.matches('a[data-record]')")

    # The patient's course, from the visit (opened with the keyboard): PHQ-9 over time.
    iv.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#visit-dialog")).to_be_visible()  # waits: the dialog opens async
    assert "Chris Nguyen" in page.inner_text("#visit-fields")
    page.click("#visit-course")
    chart = page.locator('.course-content svg[data-instrument="PHQ-9"]')
    chart.wait_for()
    assert chart.locator(".score").count() == 2
    assert chart.locator(".score-value").all_text_contents() == ["15", "10"]
    assert chart.locator(".band").count() == 5
    assert chart.locator(".marker").count() == 2  # the esketamine session held, the IV planned
    shot = tmp_path / "board-1280x800.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nboard screenshot: {shot}")

    # The held esketamine session: chair 1, 09:00, monitoring to 11:15, fulfilled.
    _show_date(page, _local(day["esketamine"]["start"]).date().isoformat())
    held = _lane_block(page, day["clinic"], "chair-1", day["esketamine"])
    assert (held.get_attribute("data-start"), held.get_attribute("data-until")) == (
        "09:00", "11:15")
    assert held.get_attribute("data-status") == "fulfilled"
    _assert_at(page, day["clinic"], f'.visit[data-booking-id="{day["esketamine"]["id"]}"]',
               "09:00")

    # The consultation: Dr. Whitfield's lane at the telehealth location, 14:00-15:00.
    _show_date(page, _local(day["consultation"]["start"]).date().isoformat())
    video = _lane_block(page, day["virtual"], f"provider-{day['whitfield']['id']}",
                        day["consultation"])
    assert (video.get_attribute("data-start"), video.get_attribute("data-end")) == (
        "14:00", "15:00")
    expect(video).to_contain_text("Jordan R.")
    _assert_at(page, day["virtual"], f'.visit[data-booking-id="{day["consultation"]["id"]}"]',
               "14:00")

    # A change arrives through the change feed (with its sync token), not a reload.
    cancelled = client.post(f"/api/v1/bookings/{day['consultation']['id']}/cancel", headers=STAFF,
                            json={"reason": "Patient request: schedule conflict"})
    assert cancelled.status_code == 200
    with page.expect_response(lambda r: "/api/v1/sync/bookings?sync_token=" in r.url) as feed:
        page.click("#refresh")
    assert feed.value.status == 200
    video.wait_for(state="detached")

    # The rules the board derives where the API has no field yet (pure, in the page).
    derived = page.evaluate("""async () => {
        const r = await import('/board/static/rules.js');
        const t = (m) => Date.parse('2030-01-07T17:00:00Z') + m * 60000;
        const iso = (m) => new Date(t(m)).toISOString();
        const b = {status: 'checked-in', start: iso(0), end: iso(15), hold_until: iso(135),
                   checked_in_at: iso(-10)};
        const spravato = {needs_chair: true, requires_rems: true};
        const pre = [{phase: 'pre'}];
        const at41 = [...pre, {phase: 'during', minutes_after_dose: 41}];
        return {
          dosing: r.boardStatus(b, t(5)), monitoring: r.boardStatus(b, t(40)),
          discharge: r.boardStatus(b, t(135)),
          due40: r.vitalsDue(b, spravato, pre, t(35)).map(d => d.kind),
          late40: r.vitalsDue(b, spravato, pre, t(55)).map(d => d.overdue),
          taken40: r.vitalsDue(b, spravato, at41, t(60)),
          atEnd: r.vitalsDue(b, spravato, at41, t(140)).map(d => d.kind),
          late: r.notArrived({...b, status: 'booked'}, t(12)),
          flagged: r.flagsOf({attention: 'clearance_required', vitals_alert_at: iso(-5)}),
          clear: r.flagsOf({attention: null, vitals_alert_at: null}),
        };
    }""")
    assert derived == {"dosing": "checked-in", "monitoring": "in-monitoring",
                       "discharge": "ready-for-discharge", "due40": ["forty-minutes"],
                       "late40": [True], "taken40": [], "atEnd": ["discharge"], "late": True,
                       "flagged": ["clearance required", "vitals beyond limits"],
                       "clear": []}

    # Nothing names a patient in the title or the address; signing out forgets the key.
    assert page.title() == "Day board"
    assert not re.search(r"Rivera|Nguyen|Jordan|Chris", page.url)
    page.click("#sign-out")
    assert page.evaluate("sessionStorage.length") == 0
    assert page.locator(".visit").count() == 0 and page.is_visible("#sign-in")

    # A provider's key: only her own visits; the license report is for staff.
    page.fill("#api-key", DEMO_KEYS["provider"])
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator('[data-needs="licenses"]')).to_contain_text("Not available to this key")
    _show_date(page, _local(day["esketamine"]["start"]).date().isoformat())
    assert _lane_block(page, day["clinic"], "chair-1", day["esketamine"]).count() == 1
    _show_date(page, iv_start.date().isoformat())
    assert page.locator(".visit").count() == 0  # Marcus Lee's visit
    assert not problems, problems

    # On a tablet at 10:30 on the IV's day: the "now" line, and Chris has not arrived.
    tablet_context = browser.new_context(viewport={"width": 800, "height": 1100})
    tablet_context.clock.set_fixed_time(iv_start + timedelta(minutes=30))
    tablet = tablet_context.new_page()
    tablet.on("pageerror", lambda e: problems.append(str(e)))
    tablet.goto(f"{demo_server}/board")
    tablet.fill("#api-key", DEMO_KEYS["staff"])
    tablet.click("#sign-in-form button[type=submit]")
    now_line = tablet.locator(f'[data-location="{day["clinic"]["id"]}"] .now-line')
    now_line.wait_for()
    assert now_line.get_attribute("data-now") == "10:30"
    _assert_at(tablet, day["clinic"], ".now-line", "10:00", fraction=0.5)
    expect(tablet.locator('[data-needs="arrivals"] li')).to_contain_text("Chris N.")
    tablet_shot = tmp_path / "board-tablet.png"
    tablet.screenshot(path=str(tablet_shot))
    print(f"board tablet screenshot: {tablet_shot}")
    assert not problems, problems
