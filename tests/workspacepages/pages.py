"""For the workspace's browser tests: Debian's Chromium driven by Playwright, one `ccr workspace` per party.

Each party's workspace is its own process with its own identity, on its own port, and each party's page is
its own browser context (its own cookies and storage): nothing passes between the two but CGS and the room.
Screenshots of each view go to the test's artifact folder (`workspace-screenshots` under pytest's tmp dir);
with CCR_SCREENSHOTS_DIR set (docs/images, say) they are copied there too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.workspacepages.accessibility import check_view

REPO = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
READY_TIMEOUT_S = 30.0
#: how long the page may take to load a view (CGS, the room and the workspace all answer locally)
VIEW_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Workspace:
    """One party's `ccr workspace`: its process, its URL, its log."""

    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def api(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        """The workspace's REST API, as a script calls it."""
        return httpx.request(method, f"{self.url}/api{path}", json=body, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_workspace(name: str, log_dir: Path, *args: str, env: dict[str, str] | None = None) -> Workspace:
    """`ccr workspace start ARGS --port P` for party `name` (with `env` added to the environment), returned
    once its API answers."""
    port = free_port()
    log = log_dir / f"wsui-workspace-{name}.log"
    process = subprocess.Popen([sys.executable, "-m", "sidecars", "workspace", "start", *args, "--port", str(port)],
                               cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})
    workspace = Workspace(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"ccr workspace for {name} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{workspace.url}/api/me", timeout=2).status_code < 500:
                return workspace
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            workspace.stop()
            pytest.fail(f"ccr workspace for {name} did not answer in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


# Module-wide, not package-wide: a test folder without __init__.py is no package, and pytest would keep
# the browser (and sync Playwright's event loop in this thread) until the session ends.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # As root Chromium refuses to start with its sandbox (it needs an unprivileged user namespace setup).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workspace-screenshots")


@dataclass
class PartyPage:
    """One party's page in its own browser context; every view it shows is checked and photographed."""

    name: str
    workspace: Workspace
    context: BrowserContext
    page: Page
    screenshots: Path
    console_errors: list[str] = field(default_factory=list)

    def view(self, route: str) -> Page:
        """Open `#/route` and wait until the view has loaded."""
        target = f"{self.workspace.url}/#/{route}"
        if self.page.url == target:
            self.page.reload()  # going to the same URL changes no hash: the view would not load again
        else:
            self.page.goto(target)
        self.wait_ready(route.split("/")[0])
        return self.page

    def wait_ready(self, view: str) -> None:
        self.page.wait_for_selector(f"main[data-ready='{view}']", timeout=VIEW_TIMEOUT_MS)

    def check_and_photograph(self, shot: str) -> None:
        """The accessibility checks on the view shown now (every control named, every control reached by
        Tab), then a full-page screenshot with every <details> opened."""
        problems = check_view(self.page)
        assert not problems.unlabelled, f"{shot}: controls without an accessible name: {problems.unlabelled}"
        assert not problems.unreachable, f"{shot}: controls Tab never reaches: {problems.unreachable}"
        self.photograph(shot)

    def photograph(self, shot: str) -> None:
        """A full-page screenshot of what the page shows now (a moment that does not wait for a Tab walk)."""
        # every <details> open, and no focus ring left where the Tab walk ended
        self.page.evaluate("() => { document.querySelectorAll('details').forEach((d) => { d.open = true; });"
                           " document.activeElement && document.activeElement.blur(); }")
        path = self.screenshots / f"workspace-{shot}.png"
        self.page.screenshot(path=str(path), full_page=True)
        copy_to = os.environ.get("CCR_SCREENSHOTS_DIR")
        if copy_to:
            shutil.copy(path, Path(copy_to) / path.name)


def party_page(browser: Browser, workspace: Workspace, screenshots: Path, *,
               ignore_https_errors: bool = False) -> PartyPage:
    """A browser context of its own for the party (`ignore_https_errors` only for a party that signs in at a
    stand-in whose certificate a local CA issued)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True,
                                  ignore_https_errors=ignore_https_errors)
    page = context.new_page()
    party = PartyPage(workspace.name, workspace, context, page, screenshots)
    page.on("pageerror", lambda error: party.console_errors.append(str(error)))
    return party


def shown_errors(page: Page) -> dict[str, str]:
    """Wait for the page to show an error, then every error line it shows: {field name or "": line}."""
    page.locator(".field-error:not([hidden]), .form-error:not([hidden])").first.wait_for(timeout=VIEW_TIMEOUT_MS)
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('.field-error:not([hidden]), .form-error:not([hidden])')].map((line) => {
          const holder = line.closest('[data-field]');
          return [holder ? holder.dataset.field : '', line.textContent];
        }))""")
