#!/usr/bin/env python3
"""End-to-end check of `fleetwire demo` in a real browser (headless Chromium via Playwright).

Starts the demo binary on free loopback ports with a data directory, opens the live page,
and checks what an operator would: the stream connects, every simulated vehicle is listed
and drawn on the map, vehicles move, a fleet event reaches the feed, selecting a vehicle
opens its details (figures, chart, trips/charging/events from REST), the admin registry
shows one subscriber per open page and one vehicle actor per vehicle. Then the server is
stopped and started again on the same ports with the same data: the page (not reloaded)
shows the outage, reconnects by itself and keeps updating. Closing the page removes its
subscriber, SIGTERM shuts the demo down with every acknowledged record processed, and the
page logged no errors (while the server was down, only the browser's own "connection
refused" reports of the reconnect attempts are expected).

Usage: live_page.py PATH_TO_FLEETWIRE_BINARY [SCREENSHOT.png]
"""
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

VEHICLES = 30
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROW = '[data-testid="vehicle-row"]'
# What Chromium logs by itself when a request cannot reach the server (the stream's
# reconnect attempts while the server is down); anything else is the page's fault.
NETWORK_ERROR = re.compile(r"net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|INCOMPLETE_CHUNKED_ENCODING)")


# The platform-admin token the running demo printed (the admin listener needs it).
ADMIN_TOKEN = None


def get_json(url):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.load(r)


def eventually(what, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {what}")


def free_ports(n):
    """Ports the kernel just handed out, so the restarted demo can bind them again."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_demo(binary, ports, data_dir):
    api, admin, vehicles = ports
    proc = subprocess.Popen(
        [binary, "demo", "--data-dir", data_dir, "--vehicles", str(VEHICLES), "--interval-ms", "500",
         "--listen", f"127.0.0.1:{api}", "--admin-listen", f"127.0.0.1:{admin}",
         "--vehicle-listen", f"127.0.0.1:{vehicles}", "--duration-secs", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    global ADMIN_TOKEN
    urls = {}
    deadline = time.time() + 60
    while len(urls) < 3 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.match(r"\s+(live page|actors|admin token)\s+(\S+)", line)
        if m:
            urls[m.group(1)] = m.group(2)
    assert len(urls) == 3, "demo printed its URLs and the admin token"
    # Authentication stays on: the page URL carries the viewer token in its fragment.
    assert "#token=" in urls["live page"], urls["live page"]
    ADMIN_TOKEN = urls["admin token"]
    return proc, urls["live page"], urls["actors"].rsplit("/admin/actors", 1)[0]


def stop_demo(proc):
    """SIGTERM; returns whether the demo shut down cleanly with every acked record processed."""
    if proc.returncode is not None:
        return False  # already stopped (and judged) before
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    clean = proc.returncode == 0 and "all acknowledged records processed: true" in out
    if not clean:
        print(f"demo did not shut down cleanly (exit {proc.returncode}): {out[-500:]}", file=sys.stderr)
    return clean


def check_page(page, page_url, admin, restart, screenshot):
    errors = []
    phase = ["up"]
    page.on("console", lambda m: m.type == "error" and errors.append((phase[0], m.text)))
    page.on("pageerror", lambda e: errors.append((phase[0], f"uncaught: {e}")))
    page.goto(page_url)
    page.wait_for_selector('[data-testid="status"][data-state="live"]', timeout=20000)
    # Polled from here with page.evaluate: wait_for_function re-evaluates a string predicate
    # with eval() inside the page whenever its first check fails, which the page's CSP
    # (no 'unsafe-eval') rightly refuses.
    eventually("every vehicle listed",
               lambda: page.evaluate(f"document.querySelectorAll('{ROW}').length") == VEHICLES)
    assert page.locator('[data-testid="vehicle-count"]').inner_text().strip() == str(VEHICLES)
    eventually("every vehicle drawn on the map",
               lambda: page.evaluate("document.querySelector('#map').dataset.vehiclesDrawn") == str(VEHICLES),
               seconds=10)

    # Vehicles move: the map is redrawn differently, and the list's values change.
    canvas = page.locator('[data-testid="map"]')
    before_map = canvas.evaluate("c => c.toDataURL()")
    before_rows = page.locator(ROW).all_inner_texts()
    eventually("the map changes as vehicles move", lambda: canvas.evaluate("c => c.toDataURL()") != before_map)
    eventually("list values change live", lambda: page.locator(ROW).all_inner_texts() != before_rows)

    # Search narrows the list; clearing it shows every vehicle again.
    first_id = page.locator(ROW).first.get_attribute("data-vehicle-id")
    page.fill("#search", first_id)
    eventually("search narrows the list", lambda: page.locator(f"{ROW}:visible").count() == 1)
    page.fill("#search", "")
    eventually("search cleared", lambda: page.locator(f"{ROW}:visible").count() == VEHICLES)

    # A driving vehicle: its details open with live figures, a chart and REST history, and
    # its position on the panel changes.
    driving = page.locator(f'{ROW}:has(.dot.driving)').first
    vehicle_id = driving.get_attribute("data-vehicle-id")
    assert vehicle_id.startswith("v0-"), f"vehicles are shown by pseudonym, not VIN: {vehicle_id}"
    driving.click()
    detail = page.locator('[data-testid="detail"]')
    eventually("detail panel shows the selected vehicle", lambda: vehicle_id in detail.locator("h3").inner_text())
    for part in ("detail-trips", "detail-charging", "detail-events"):
        page.wait_for_selector(f'[data-testid="{part}"][data-loaded="true"]', timeout=10000)
    page.wait_for_selector('[data-testid="detail-chart"] polyline.series.speed', timeout=10000)

    # The panel re-renders live (and says "reloading" instead of a version while the page
    # reloads after a restart), so a read may find no figure yet: None, not an error.
    def position_text():
        m = re.search(r"Position\s+(\S+, \S+)", page.locator('[data-testid="detail-figures"]').inner_text())
        return m and m.group(1)

    def version_shown():
        m = re.search(r"version (\d+)", detail.inner_text())
        return m and int(m.group(1))
    eventually("the detail panel shows a position", lambda: position_text() is not None)
    start = position_text()
    eventually("the selected vehicle moves", lambda: position_text() not in (None, start), seconds=30)

    # The feed opens with the vehicles' recent events from REST, and the demo's trips,
    # geofences and alerts reach it live over the stream (trips count from 500 m).
    page.wait_for_selector('[data-testid="feed-item"][data-source="stream"]', timeout=90000)

    counts = get_json(f"{admin}/admin/actors")["counts"]
    assert counts["subscriber"] == 1, counts
    assert counts["vehicle_state"] == VEHICLES, counts
    assert counts["vehicle_connection"] == VEHICLES, counts

    # Server restart: the same page (not reloaded) notices, reconnects and goes on.
    page.evaluate("window.__sameDocument = true")
    eventually("the detail panel shows a version", lambda: version_shown() is not None)
    version_before = version_shown()
    phase[0] = "restart"
    admin = restart(page)
    phase[0] = "after"
    page.wait_for_selector('[data-testid="status"][data-state="live"]', timeout=60000)
    eventually("updates continue after the restart",
               lambda: (version_shown() or 0) > version_before + 5,
               seconds=30)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert page.locator(ROW).count() == VEHICLES
    eventually("the restarted node registers the page's subscriber",
               lambda: get_json(f"{admin}/admin/actors")["counts"].get("subscriber") == 1)

    # An event's vehicle link selects that vehicle.
    link = page.locator('[data-testid="feed-item"] button[data-vehicle-id]').first
    event_vehicle = link.get_attribute("data-vehicle-id")
    link.click()
    eventually("an event's vehicle is selected", lambda: event_vehicle in detail.locator("h3").inner_text())
    page.wait_for_selector('[data-testid="detail-events"][data-loaded="true"]', timeout=10000)

    time.sleep(2)  # let the chart and figures settle for the screenshot
    page.screenshot(path=screenshot)
    page.close()
    eventually("subscriber removed after the page closed",
               lambda: get_json(f"{admin}/admin/actors")["counts"].get("subscriber", 0) == 0)

    bad = [(p, t) for p, t in errors if not (p == "restart" and NETWORK_ERROR.search(t))]
    assert not bad, f"console errors: {bad}"
    print(f"browser: {len(errors)} expected network errors while the server was down")


def main():
    binary = sys.argv[1]
    screenshot = sys.argv[2] if len(sys.argv) > 2 else tempfile.mktemp(suffix=".png")
    data_dir = tempfile.mkdtemp(prefix="fleetwire-browser-")
    ports = free_ports(3)
    proc, page_url, admin = start_demo(binary, ports, data_dir)
    state = {"proc": proc}
    passed = failed = 0

    def restart(page):
        # The page stays open; its indicator must leave "live" while the server is gone.
        if not stop_demo(state["proc"]):
            raise AssertionError("the first demo did not stop cleanly")
        page.wait_for_selector('[data-testid="status"][data-state="down"]', timeout=20000)
        state["proc"], _, new_admin = start_demo(binary, ports, data_dir)
        return new_admin

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            check_page(page, page_url, admin, restart, screenshot)
            browser.close()
            passed += 1
    except Exception as e:  # report, then fail the run
        print(f"live page check failed: {e!r}", file=sys.stderr)
        failed += 1
    finally:
        if stop_demo(state["proc"]):
            passed += 1
        else:
            failed += 1
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"browser: {passed} passed, {failed} failed (screenshot: {screenshot})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
