"""Headless chromium, driven through the Chrome DevTools Protocol over its WebSocket.

``Browser.launch`` starts chromium in a process group of its own on a free debugging port (chromium
picks it and writes it to ``DevToolsActivePort`` in the profile folder) and attaches to its first
page; ``close`` kills the whole group and removes the profile, whatever state the test left it in.
Only what the status page's test needs: navigate, evaluate an expression, take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


class BrowserError(Exception):
    """Chromium did not start, or a DevTools command failed."""


class Browser:
    def __init__(self, proc: subprocess.Popen[bytes], profile: Path, log: Path) -> None:
        self.proc = proc
        self.profile = profile
        self.log = log
        self.page: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._connections = contextlib.ExitStack()

    @classmethod
    def launch(cls, executable: str, width: int = 1600, height: int = 600, within_s: float = 20) -> Browser:
        profile = Path(tempfile.mkdtemp(prefix="asyncstack-chromium-"))
        log = profile.parent / f"{profile.name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={profile}",
                                     f"--window-size={width},{height}", "about:blank"],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        browser = cls(proc, profile, log)
        try:
            browser._attach(within_s)
        except BaseException:
            browser.close()
            raise
        return browser

    def _attach(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        port_file = self.profile / "DevToolsActivePort"
        while True:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if port_file.is_file() and port_file.read_text().strip():
                port = int(port_file.read_text().split()[0])
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                        pages = [t for t in json.load(response) if t.get("type") == "page"]
                except OSError:
                    pages = []
                if pages:
                    self.page = self._connections.enter_context(
                        connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=5))
                    return
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium's DevTools did not answer within {within_s} s")
            time.sleep(0.05)

    def call(self, method: str, timeout_s: float = 10, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        assert self.page is not None, "not attached"
        command_id = next(self._ids)
        self.page.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            reply = json.loads(self.page.recv(timeout=max(0.01, deadline - time.monotonic())))
            if reply.get("id") == command_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-like values only)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str, within_s: float = 10) -> None:
        """Open ``url`` and wait until its document has loaded."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + within_s
        while self.evaluate("location.href") != url or self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load within {within_s} s")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        """The whole page as it is drawn now (beyond the window, if larger), as a PNG."""
        width, height = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Kill chromium and every process it started; remove its profile."""
        self.page = None
        try:
            self._connections.close()
        except Exception:   # the browser may already be gone: it is killed next anyway
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
        self.log.unlink(missing_ok=True)
