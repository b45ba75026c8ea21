"""Open a local HTML file in the real headless Chromium and report what the page did.

Pages are judged by what a reader's browser does, not by a DOM emulation: the page runs in
``/usr/bin/chromium``, driven over the Chrome DevTools Protocol with aiohttp (already a
dependency), so no browser-automation package is needed. Each call starts a fresh browser
with a throw-away profile and kills its whole process group afterwards, so a test can
neither see another test's state nor leave a process behind.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # a free port, written to DevToolsActivePort: no collisions
]
FULL_PNG = {"format": "png", "captureBeyondViewport": True}
#: Console API calls worth a report: a page that logs or asserts errors is not fine.
CONSOLE_TYPES = {"error", "warning", "assert"}


def require_chromium() -> None:
    """Skip the calling test without Chromium, or fail it where CI promises Chromium."""
    import pytest

    if CHROMIUM.exists():
        return
    problem = f"no {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("DAGBOX_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"Chromium is required here but {problem}", pytrace=False)
    pytest.skip(problem)


@dataclass
class PageReport:
    """What the page did: complaints, network traffic, the probe's answer, and a picture."""

    #: Console errors/warnings, uncaught exceptions and browser log errors/warnings, as text.
    console: list[str] = field(default_factory=list)
    #: Every URL the page requested, other than its own file and data:/blob: URLs.
    requests: list[str] = field(default_factory=list)
    #: The JSON value of ``probe_js``.
    value: Any = None
    screenshot: Path | None = None


def open_page(
    html: Path,
    *,
    ready_js: str,
    probe_js: str,
    screenshot: Path | None = None,
    timeout: float = 60.0,
    width: int = 1280,
    height: int = 900,
) -> PageReport:
    """Load ``html`` in headless Chromium, wait until the expression ``ready_js`` is (or
    resolves to) something truthy, then evaluate ``probe_js`` (promises are awaited) and
    optionally save a full-page PNG.

    Synchronous, so plain pytest tests can call it. Raises ``TimeoutError`` (with what was
    collected so far) when the page is not ready within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    report = PageReport(screenshot=screenshot)
    url = html.resolve().as_uri()

    async def drive(port: int) -> bytes | None:
        async with asyncio.timeout(deadline - time.monotonic()), aiohttp.ClientSession() as http:
            # A fresh page target of our own: its socket carries only this page's events,
            # never Chromium's own background requests.
            async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as response:
                target = await response.json()
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = _Page(ws, url, report)
                reader = asyncio.create_task(page.read())
                for domain in ("Runtime", "Log", "Network", "Page"):  # before navigating
                    await page.call(f"{domain}.enable")
                size = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
                await page.call("Emulation.setDeviceMetricsOverride", **size)
                navigated = await page.call("Page.navigate", url=url)
                if "errorText" in navigated:
                    raise RuntimeError(f"navigating to {url}: {navigated['errorText']}")
                # The URL check keeps a ready_js that about:blank satisfies from passing early;
                # a promise from ready_js is awaited (``!!promise`` would be true at once).
                ready = f"Promise.resolve({ready_js}).then(Boolean)"
                ready, last = f"document.URL === {json.dumps(url)} && {ready}", None
                while True:
                    try:
                        if await page.evaluate(ready):
                            break
                    except RuntimeError as error:  # mid-navigation, or ready_js throws
                        last = error
                    if time.monotonic() > deadline - 0.1:
                        raise TimeoutError(f"{ready_js!r} never became true (last error: {last})")
                    await asyncio.sleep(0.05)
                report.value = await page.evaluate(probe_js)
                png = None
                if screenshot is not None:  # the whole page, not just the viewport
                    content = (await page.call("Page.getLayoutMetrics"))["cssContentSize"]
                    clip = {"x": 0, "y": 0, "width": max(width, content["width"]), "scale": 1}
                    clip["height"] = max(height, content["height"])
                    shot = await page.call("Page.captureScreenshot", clip=clip, **FULL_PNG)
                    png = base64.b64decode(shot["data"])
                await ws.send_json({"id": 0, "method": "Browser.close"})  # it reaps its children
                reader.cancel()
                return png

    root = Path(tempfile.mkdtemp(prefix="dagbox-chromium-"))
    profile, log = root / "profile", root / "chromium.log"  # stderr is noisy: keep it here
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group, so killpg reaches every child
        )
    closing = False
    try:
        png = asyncio.run(drive(_devtools_port(profile, proc, deadline, log)))
        closing = True
        if screenshot is not None and png is not None:
            screenshot.write_bytes(png)
        return report
    except TimeoutError as error:
        raise TimeoutError(
            f"{html.name} not ready within {timeout}s ({error or 'no answer'}); "
            f"console={report.console} requests={report.requests}"
        ) from None
    finally:
        _kill(proc, profile, grace=5.0 if closing else 0.0)
        shutil.rmtree(root, ignore_errors=True)


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> int:
    """The debugging port, once Chromium has written it (it picks a free one itself)."""
    active = profile / "DevToolsActivePort"
    while proc.poll() is None and time.monotonic() < deadline:
        lines = active.read_text().splitlines() if active.exists() else []
        if len(lines) >= 2:  # the port, then the browser's path: the file is complete
            return int(lines[0])
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"chromium (exit code {proc.poll()}) wrote no DevToolsActivePort:\n{tail}")


def _kill(proc: subprocess.Popen[bytes], profile: Path, grace: float) -> None:
    """Kill Chromium's process group, then anything still naming the profile, and wait.

    After ``Browser.close`` Chromium exits by itself within ``grace`` and reaps its children;
    otherwise (timeout, error) SIGKILL to the group leaves only zombies, which init reaps.
    """
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):  # a child that left the group (none seen so far) is killed by pid
        if not (left := _holders(profile)):
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _holders(profile: Path) -> list[int]:
    """Pids of live processes whose command line names ``profile`` (zombies have none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if str(profile).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


class _Page:
    """One page target's DevTools socket: commands matched to answers by id, events reported."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, url: str, report: PageReport) -> None:
        self.ws, self.url, self.report = ws, url, report
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self.event(data["method"], data.get("params", {}))

    def event(self, method: str, params: dict[str, Any]) -> None:
        console = self.report.console
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != self.url and not url.startswith(("data:", "blob:")):
                self.report.requests.append(url)
        elif method == "Runtime.consoleAPICalled" and params["type"] in CONSOLE_TYPES:
            args = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
            console.append(f"console.{params['type']}: {' '.join(args)}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            thrown = details.get("exception", {}).get("description", "")
            console.append(f"exception: {details['text']} {thrown}".rstrip())
        elif method == "Log.entryAdded" and params["entry"]["level"] in {"error", "warning"}:
            entry = params["entry"]
            console.append(f"log.{entry['level']}: {entry['text']} {entry.get('url', '')}".rstrip())

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        future = self.pending[ident := next(self.ids)] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        answer = await future
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return dict(answer["result"])

    async def evaluate(self, js: str) -> Any:
        """The JSON value of ``js``; RuntimeError if it throws."""
        answer = await self.call(
            "Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{js!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")
