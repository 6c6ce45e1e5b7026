"""report.html in a real browser: headless Chromium loads the sample bundle's
report from file://, runs its one script without a console message or a
Content-Security-Policy refusal, shows the hostile console line as text, and
renders a screenshot that is a real picture (the red verdict banner on top).
The page leads with its defects, draws windows of outcomes on the cut chart
(each failed window a link to its defect), and every in-page link resolves
to an element of the page Chromium rendered.

Run by ctest (reports.browser) with OTARIG_SAMPLE_BUNDLE (the program that
writes the sample bundle) and OTARIG_REPORT_SCREENSHOT (where the PNG goes).
"""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

HOSTILE = "<script>alert(1)</script>"
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (ci/setup browser group)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    subprocess.run([os.environ["OTARIG_SAMPLE_BUNDLE"], str(out)], check=True, capture_output=True)
    return out / "report.html"


def chromium(*args):
    with tempfile.TemporaryDirectory(prefix="otarig-chromium-") as profile:
        cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120)


class Dom(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = {}
        self.html_attrs = {}
        self.console_text = []
        self._in_console = 0
        self.ids = []            # every id, in document order
        self.links = []          # every in-page href, without its '#'
        self.windows = []        # the cut chart's bands: (attributes, href of the link around it or None)
        self.defect_titles = {}  # defect article id -> its heading's text
        self._links_open = []
        self._heading_of = None

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attrs = dict(attrs)
        if tag == "html":
            self.html_attrs = attrs
        if tag == "pre" and "console" in (attrs.get("class") or ""):
            self._in_console += 1
        if attrs.get("id"):
            self.ids.append(attrs["id"])
        if tag == "a":
            href = attrs.get("href") or ""
            if href.startswith("#"):
                self.links.append(href[1:])
            self._links_open.append(href)
        if tag == "rect" and "window" in (attrs.get("class") or "").split():
            self.windows.append((attrs, self._links_open[-1] if self._links_open else None))
        if tag == "article" and "defect" in (attrs.get("class") or "").split():
            self._heading_of = attrs.get("id")
        if tag == "h3" and self._heading_of:
            self.defect_titles[self._heading_of] = ""

    def handle_endtag(self, tag):
        if tag == "pre" and self._in_console:
            self._in_console -= 1
        if tag == "a" and self._links_open:
            self._links_open.pop()
        if tag == "h3":
            self._heading_of = None

    def handle_data(self, data):
        if self._in_console:
            self.console_text.append(data)
        if self._heading_of in self.defect_titles:
            self.defect_titles[self._heading_of] += data


@pytest.fixture(scope="module")
def rendered(report):
    """The page as Chromium built it (--dump-dom), parsed."""
    p = chromium("--dump-dom", report.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    dom = Dom()
    dom.feed(p.stdout)
    return dom


@pytest.fixture(scope="module")
def run_json(report):
    return json.loads((report.parent / "run.json").read_text())


def test_report_runs_without_script_errors_and_shows_hostile_output_as_text(report):
    p = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    dom = Dom()
    dom.feed(p.stdout)
    # The report's own script ran (it marks <html>), under its Content-Security-Policy.
    assert dom.html_attrs.get("data-script") == "ran", p.stdout[:500]
    # Nothing was injected: one script element (the report's), no image.
    assert dom.tags.get("script") == 1
    assert "img" not in dom.tags
    assert dom.tags.get("svg") == 2
    # The hostile console line is there, as text.
    assert HOSTILE in "".join(dom.console_text)
    # No console message and no policy refusal: a refused or failing script logs one.
    logged = [l for l in p.stderr.splitlines() if "CONSOLE" in l or "Refused to" in l or "Uncaught" in l]
    assert not logged, "\n".join(logged)


def png_pixels(data):
    """Decodes an 8-bit RGB/RGBA non-interlaced PNG: (width, height, rows of bytes, bytes per pixel)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = ihdr
    assert depth == 8 and colour in (2, 6) and interlace == 0, ihdr
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def test_screenshot_is_a_real_picture(report):
    shot = Path(os.environ.get("OTARIG_REPORT_SCREENSHOT", "report-screenshot.png"))
    shot.parent.mkdir(parents=True, exist_ok=True)
    if shot.exists():
        shot.unlink()
    p = chromium("--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", report.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    data = shot.read_bytes()
    assert len(data) > 30_000, f"{shot}: only {len(data)} bytes"
    width, height, rows, bpp = png_pixels(data)
    assert (width, height) == (1280, 2000)
    # The verdict banner: the fail red (#b3261e) fills the top of the page.
    top = rows[20]
    reds = sum(1 for x in range(0, width * bpp, bpp) if abs(top[x] - 0xB3) < 8 and abs(top[x + 1] - 0x26) < 8
               and abs(top[x + 2] - 0x1E) < 8)
    assert reds > width // 2, f"top row is not the red verdict banner ({reds} red pixels)"
    # Below it, a page with text and charts: many colours, not a blank sheet.
    colours = {rows[y][x:x + 3] for y in range(200, height, 7) for x in range(0, width * bpp, bpp * 5)}
    assert len(colours) > 50, f"only {len(colours)} colours below the banner"


def test_the_report_leads_with_its_defects(rendered, run_json):
    defects = run_json["defects"]
    assert len(defects) == 2, defects
    # The defects section comes before the run facts and the findings.
    assert rendered.ids.index("defects") < rendered.ids.index("run") < rendered.ids.index("findings")
    # One card per defect, in run.json's order, each headed by its id and title.
    cards = [i for i in rendered.ids if i.startswith("defect-") and i != "defect-headline"]
    assert cards == [f"defect-{d['id']}" for d in defects]
    for d in defects:
        assert rendered.defect_titles[f"defect-{d['id']}"] == f"{d['id']}: {d['title']}"


def test_every_in_page_link_resolves(rendered):
    ids = set(rendered.ids)
    assert len(ids) == len(rendered.ids), "an id is used twice"
    missing = sorted({link for link in rendered.links if link not in ids})
    assert not missing, missing
    # The navigation, the defects' links to the chart and the chart's links to the defects.
    assert {"defects", "cuts", "findings", "trials"} <= set(rendered.links)
    assert rendered.links.count("cuts") >= 2


def test_the_cut_chart_shows_windows_of_outcomes(rendered, run_json):
    assert "cut-window-chart" in rendered.ids
    sweep = sorted((t for t in run_json["trials"] if "before_op" in t["fault"]),
                   key=lambda t: (t["fault"]["before_op"], t["id"]))
    bands = rendered.windows
    assert bands, "no window band on the chart"
    # The bands of the plain (not torn) cuts cover their trials in the order
    # of the operation: same outcomes, same first and last operations.
    for torn in (False, True):
        row = [t for t in sweep if t["fault"]["torn"] is torn]
        expected, outcome_of = [], {i: d["id"] for d in run_json["defects"] for i in d["trials"]}
        for t in row:
            outcome = "pass" if t["verdict"] == "pass" else outcome_of[t["id"]]
            if expected and expected[-1][0] == outcome:
                expected[-1][2] = t["fault"]["before_op"]
                expected[-1][3] += 1
            else:
                expected.append([outcome, t["fault"]["before_op"], t["fault"]["before_op"], 1])
        drawn = [[a["data-outcome"], int(a["data-first"]), int(a["data-last"]), int(a["data-trials"])]
                 for a, _ in bands[:len(expected)]]
        assert drawn == expected, (torn, drawn, expected)
        bands = bands[len(expected):]
    assert not bands, bands
    # Each failed window links to its defect's card; passed ones link nowhere.
    for attrs, href in rendered.windows:
        if attrs["data-outcome"] == "pass":
            assert href is None and "pass" in attrs["class"]
        else:
            assert href == "#defect-" + attrs["data-outcome"] and "fail" in attrs["class"]



def test_the_update_mechanism_and_the_catalog_have_their_sections(rendered, run_json):
    """The update mechanism under test follows the run facts, with a table per
    part and what the run did not test; the traceability names the catalog."""
    ids = rendered.ids
    assert ids.index("run") < ids.index("mechanism") < ids.index("traceability")
    for part in ("mechanism-signing", "mechanism-transport", "mechanism-storage", "mechanism-policies",
                 "not-tested", "catalog"):
        assert part in ids, part
    assert ids.index("mechanism") < ids.index("not-tested") < ids.index("traceability") < ids.index("catalog")
    assert "mechanism" in rendered.links and "traceability" in rendered.links
    assert run_json["compliance"]["version"] and run_json["mechanism"]["signing"]["signing_key"] == "test:sample"
