#!/usr/bin/env python3
"""End-to-end check of `fleetwire demo` in a real browser (headless Chromium via Playwright).

Starts the demo binary on random loopback ports, opens the live page, and checks what a
new user would: the stream connects, every simulated vehicle is listed, values change
live, selecting a vehicle shows its details, the admin registry shows one subscriber per
open page and one vehicle actor per vehicle, closing the page removes its subscriber, and
SIGTERM shuts the demo down with every acknowledged record processed.

Usage: live_page.py PATH_TO_FLEETWIRE_BINARY
"""
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

VEHICLES = 30
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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


def start_demo(binary):
    proc = subprocess.Popen(
        [binary, "demo", "--ephemeral", "--vehicles", str(VEHICLES), "--interval-ms", "500",
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--vehicle-listen", "127.0.0.1:0",
         "--duration-secs", "300"],
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
    # The page URL carries the viewer token in its fragment (authentication stays on).
    assert "#token=" in urls["live page"], urls["live page"]
    ADMIN_TOKEN = urls["admin token"]
    admin = urls["actors"].rsplit("/admin/actors", 1)[0]
    return proc, urls["live page"], admin


def main():
    binary = sys.argv[1]
    proc, page_url, admin = start_demo(binary)
    passed = failed = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_url)
            page.wait_for_selector('[data-testid="status"][data-state="connected"]', timeout=20000)
            page.wait_for_function(
                f"document.querySelectorAll('[data-testid=vehicle-row]').length === {VEHICLES}", timeout=20000)
            assert page.locator('[data-testid="vehicle-count"]').inner_text().strip() == str(VEHICLES)

            def table_text():
                return page.locator('[data-testid="vehicle-row"]').all_inner_texts()

            before = table_text()
            eventually("table values change live", lambda: table_text() != before)

            row = page.locator('[data-testid="vehicle-row"]').nth(1)
            vehicle_id = row.inner_text().split()[0]
            assert vehicle_id.startswith("v0-"), f"vehicles are shown by pseudonym, not VIN: {vehicle_id}"
            row.click()
            eventually("detail panel shows the selected vehicle",
                       lambda: vehicle_id in page.inner_text("#detail") and "Soc" in page.inner_text("#detail"))

            counts = get_json(f"{admin}/admin/actors")["counts"]
            assert counts["subscriber"] == 1, counts
            assert counts["vehicle_state"] == VEHICLES, counts
            assert counts["vehicle_connection"] == VEHICLES, counts
            with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as shot:
                page.screenshot(path=shot.name)
            page.close()
            eventually("subscriber removed after the page closed",
                       lambda: get_json(f"{admin}/admin/actors")["counts"]["subscriber"] == 0)
            browser.close()
            passed += 1
    except Exception as e:  # report, then fail the run
        print(f"live page check failed: {e!r}", file=sys.stderr)
        failed += 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    if proc.returncode != 0 or "all acknowledged records processed: true" not in out:
        print(f"demo did not shut down cleanly (exit {proc.returncode}): {out[-500:]}", file=sys.stderr)
        failed += 1
    else:
        passed += 1
    print(f"browser: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
