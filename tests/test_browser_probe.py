"""The headless-Chromium helper itself, on tiny pages: what it reports, and that it cleans up.

Without ``/usr/bin/chromium`` these tests are skipped, unless ``DAGBOX_REQUIRE_CHROMIUM=1``
(as CI sets): then a missing browser is a failure, never a silent skip.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest

from tests.browser import open_page, require_chromium

SVG = '<svg width="300" height="60">' + "".join(
    f'<rect x="{60 * i}" width="50" height="50" fill="teal"/>' for i in range(3)
)
SVG += "</svg>"


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp dir that also holds the browser's profile, so leftovers can be looked for."""
    require_chromium()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(profiles))
    return tmp_path


def page(folder: Path, body: str) -> Path:
    html = folder / "page.html"
    html.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>"
    )
    return html


def assert_cleaned_up(folder: Path) -> None:
    """No Chromium process naming the profile survives, and the profile itself is gone."""
    needle = str(folder / "profiles").encode()
    left = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"chromium" in cmdline and needle in cmdline:
            left.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    assert left == []
    assert list((folder / "profiles").iterdir()) == []


def test_a_fine_page_reports_its_probe_and_a_full_page_screenshot(scratch: Path) -> None:
    html = page(scratch, f"{SVG}<div style='height:2000px'></div>")
    png = scratch / "shot.png"
    report = open_page(
        html,
        ready_js="document.querySelectorAll('svg rect').length === 3",
        probe_js="[...document.querySelectorAll('rect')].map(r => r.getBBox().x)",
        screenshot=png,
        width=800,
        height=600,
    )
    assert report.value == [0, 60, 120]
    assert report.console == []
    assert report.requests == []
    assert report.screenshot == png
    header = png.read_bytes()[:24]
    assert header.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", header[16:24])
    assert width == 800
    assert height > 2000  # beyond the 600px viewport: the whole page
    assert_cleaned_up(scratch)


def test_console_errors_and_uncaught_exceptions_are_reported(scratch: Path) -> None:
    html = page(
        scratch,
        '<script>console.log("chatter"); console.error("boom")</script>'
        '<script>throw new Error("kaboom")</script>'
        "<script>window.done = true</script>",
    )
    report = open_page(html, ready_js="window.done === true", probe_js="document.title")
    assert report.value == ""
    assert len(report.console) == 2, report.console
    assert report.console[0] == "console.error: boom"
    assert report.console[1].startswith("exception: Uncaught Error: kaboom")
    assert_cleaned_up(scratch)


def test_every_request_of_the_page_is_reported(scratch: Path) -> None:
    pixel = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    html = page(scratch, f'<img src="{pixel}"><img src="http://127.0.0.1:9/x.png">')
    report = open_page(html, ready_js="document.readyState === 'complete'", probe_js="1")
    assert report.requests == ["http://127.0.0.1:9/x.png"]  # not the page, not data: URLs
    # Port 9 is on Chromium's unsafe-port list: the load fails without touching the network.
    assert any("x.png" in line for line in report.console), report.console
    assert_cleaned_up(scratch)


def test_a_page_that_never_gets_ready_times_out_and_leaves_nothing(scratch: Path) -> None:
    html = page(scratch, "<script>console.warn('still waiting')</script>")
    with pytest.raises(TimeoutError, match="never became true") as info:
        open_page(html, ready_js="window.never === true", probe_js="1", timeout=3)
    assert "still waiting" in str(info.value)  # what was collected so far
    assert_cleaned_up(scratch)
