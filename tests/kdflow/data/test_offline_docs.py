"""Offline Data Docs (`kdflow.data.offline_docs`): the manifest matches GX's templates, fetching verifies
and unpacks only what is listed, localising rewrites every page of a nested site, and real GX
Data Docs, localised, render in a Chromium that can resolve no host."""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.util
import io
import json
import logging
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from kdflow.data import offline_docs as data_docs
from kdflow.data.contract import DataContract
from kdflow.data.offline_docs import FetchError, Package, default_assets, fetch, localise, manifest, ready
from kdflow.data.validation import Suites, to_frame
from tests.browser import chromium, needs_chromium

GX_TEMPLATES = Path(importlib.util.find_spec("great_expectations").origin).parent / "render" / "view" / "templates"
# The src/href of every <script> and <link> of a page or template.
REFERENCE = re.compile(r"""<(?:script|link)\b[^>]*?\s(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
REMOTE = re.compile(r"(https?:)?//")


def references(page: Path) -> list[str]:
    return REFERENCE.findall(page.read_text(encoding="utf-8"))


def snapshot(site: Path) -> dict[Path, str]:
    return {page: page.read_text(encoding="utf-8") for page in sorted(site.rglob("*.html"))}


# The manifest.


def test_the_manifest_replaces_exactly_the_cdn_urls_of_the_gx_templates():
    in_templates = {url for t in GX_TEMPLATES.glob("*.j2") for url in REFERENCE.findall(t.read_text()) if REMOTE.match(url)}
    assert in_templates  # else the templates moved and this test checks nothing
    assert in_templates == {url for p in manifest() for url in p.replaces}


def test_the_manifest_pins_exact_versions_with_sha512_integrity():
    packages = manifest()
    assert len({p.folder for p in packages}) == len(packages)
    for p in packages:
        assert re.fullmatch(r"\d+\.\d+\.\d+", p.version), p.folder
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", p.integrity), p.folder
    majors = {p.name: p.version.split(".")[0] for p in packages}
    assert (majors["vega"], majors["vega-lite"], majors["vega-embed"]) == ("5", "5", "6")  # what the templates ask for


# Fetching, from a fake registry on disk (file:// URLs go through the same urllib code).


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            member = tarfile.TarInfo(f"package/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry holding one scoped package, and a manifest naming it; returns (registry, package, tarball)."""
    data = tarball(
        {
            "package.json": b'{"name": "@scope/pkg"}',
            "LICENSE": b"MIT",
            "dist/pkg.min.js": b"ok();",
            "dist/pkg.js": b"not listed",
            "README.md": b"not listed",
        }
    )
    root = tmp_path / "registry"
    (root / "@scope" / "pkg" / "-").mkdir(parents=True)
    (root / "@scope" / "pkg" / "-" / "pkg-1.0.0.tgz").write_bytes(data)
    package = Package(
        "@scope/pkg",
        "1.0.0",
        sri(data),
        "MIT",
        ("LICENSE",),
        ("dist/pkg.min.js",),
        {"https://cdn.example.org/pkg.min.js": "dist/pkg.min.js"},
    )
    monkeypatch.setattr(data_docs, "manifest", lambda: [package])
    monkeypatch.setenv("KDFLOW_NPM_REGISTRY", root.as_uri())
    return root, package, data


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_fetch_keeps_the_listed_files_with_licences_and_skips_what_is_present(registry, tmp_path):
    dest = tmp_path / "assets"
    assert fetch(dest) == ["@scope/pkg@1.0.0"]  # from $KDFLOW_NPM_REGISTRY
    assert files_under(dest) == {"@scope/pkg@1.0.0/" + f for f in ("package.json", "LICENSE", "dist/pkg.min.js")}
    assert fetch(dest) == []
    (dest / "@scope" / "pkg@1.0.0" / "LICENSE").unlink()  # an interrupted copy by hand, say: fetched again, whole
    assert fetch(dest) == ["@scope/pkg@1.0.0"] and (dest / "@scope" / "pkg@1.0.0" / "LICENSE").is_file()


def test_fetch_refuses_a_tarball_that_does_not_match_its_integrity(registry, tmp_path):
    root, _, _ = registry
    substitute = tarball({"package.json": b'{"name": "@scope/pkg"}', "LICENSE": b"MIT", "dist/pkg.min.js": b"evil();"})
    (root / "@scope" / "pkg" / "-" / "pkg-1.0.0.tgz").write_bytes(substitute)
    with pytest.raises(FetchError, match="does not match its integrity"):
        fetch(tmp_path / "assets")
    assert not (tmp_path / "assets").exists()


def test_fetch_refuses_a_tarball_without_a_listed_file_and_leaves_nothing_behind(registry, tmp_path, monkeypatch):
    _, package, _data = registry
    wrong = Package(
        package.name, package.version, package.integrity, package.license, package.license_files, ("dist/missing.js",), {}
    )
    monkeypatch.setattr(data_docs, "manifest", lambda: [wrong])
    with pytest.raises(FetchError, match=r"no \['dist/missing.js'\]"):
        fetch(tmp_path / "assets")
    assert list((tmp_path / "assets" / "@scope").iterdir()) == []  # neither the package nor its temporary folder


def test_the_fetch_command_fails_clearly_when_the_registry_is_unreachable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDFLOW_NPM_REGISTRY", "http://127.0.0.1:9")  # discard port: nothing listens
    assert data_docs.main(["fetch", "--dest", str(tmp_path / "assets")]) == 1
    assert (
        "kdflow.data.offline_docs fetch failed: jquery@3.7.1: could not download http://127.0.0.1:9/jquery/-/jquery-3.7.1.tgz"
        in (capsys.readouterr().err)
    )


# Localising a fake site: pages at three depths, as GX lays them out.

JQUERY = "https://code.jquery.com/jquery-3.7.1.min.js"
POPPER = "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js"
FONTS = "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css"
DARK = "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css"
UNKNOWN = "https://cdn.example.org/new-in-gx-2.js"
PAGE = f"""<!DOCTYPE html><html><head>
<link rel="stylesheet" href="{DARK}" />
<link rel="stylesheet" href="{FONTS}">
<link rel="shortcut icon" href="./static/images/favicon.ico" type="image/x-icon"/>
<script src="{JQUERY}"></script>
<script src="{POPPER}"
  integrity="sha384-ApNbgh9B+Y1QKtv3Rn7W3mgPxhU9K/ScQsAP7hUibX39j7fakFPskvXusvfa0b4Q" crossorigin="anonymous"></script>
<script src="{UNKNOWN}"></script>
</head><body><a href="https://greatexpectations.io">Great Expectations</a> <p>src="{JQUERY}"</p></body></html>
"""
PAGES = ("index.html", "expectations/train.html", "validations/train/kdflow-validate/20260101T000000.000000Z/train-train.html")


@pytest.fixture
def fake_assets(tmp_path) -> Path:
    assets = tmp_path / "assets"
    for package in manifest():
        for path in package.kept:
            (assets / package.folder / path).parent.mkdir(parents=True, exist_ok=True)
            (assets / package.folder / path).write_text(f"{package.folder}/{path}")
    return assets


@pytest.fixture
def fake_site(tmp_path) -> Path:
    site = tmp_path / "docs"
    for name in PAGES:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(PAGE)
    return site


def test_localise_points_every_page_at_its_copy_of_the_assets(fake_site, fake_assets, caplog):
    with caplog.at_level(logging.WARNING, logger="kdflow.data.offline_docs"):
        assert localise(fake_site, fake_assets) == 4 * len(PAGES)
    vendor = fake_site / "static" / "vendor"
    assert (vendor / "jquery@3.7.1" / "LICENSE.txt").is_file()  # the licences travel with the assets
    assert (vendor / "@fortawesome" / "fontawesome-free@6.6.0" / "webfonts" / "fa-solid-900.woff2").is_file()
    for name in PAGES:
        page = fake_site / name
        text = page.read_text()
        up = "../" * name.count("/")
        assert references(page) == [
            f"{up}static/vendor/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css",
            f"{up}static/vendor/@fortawesome/fontawesome-free@6.6.0/css/all.min.css",
            "./static/images/favicon.ico",  # not a CDN
            f"{up}static/vendor/jquery@3.7.1/dist/jquery.min.js",
            f"{up}static/vendor/popper.js@1.12.9/dist/umd/popper.min.js",
            UNKNOWN,  # left alone, and reported
        ]
        assert all((page.parent / ref).is_file() for ref in references(page) if "vendor/" in ref)
        assert "integrity=" not in text and "crossorigin" not in text
        assert '<a href="https://greatexpectations.io">' in text and f'<p>src="{JQUERY}"</p>' in text  # not a script or link
    assert [r.getMessage() for r in caplog.records if UNKNOWN in r.getMessage()] == [
        f"Data Docs load {UNKNOWN}, which offline_docs.json lacks; they need a network for it"
    ]


def test_localising_twice_changes_nothing_more(fake_site, fake_assets):
    localise(fake_site, fake_assets)
    once = snapshot(fake_site)
    assert localise(fake_site, fake_assets) == 0
    assert snapshot(fake_site) == once


def test_without_complete_assets_the_pages_are_left_as_gx_wrote_them(fake_site, fake_assets):
    before = snapshot(fake_site)
    assert localise(fake_site, fake_assets.parent / "missing") == 0
    (fake_assets / "vega@5.33.1" / "build" / "vega.min.js").unlink()
    assert localise(fake_site, fake_assets) == 0
    assert snapshot(fake_site) == before and not (fake_site / "static").exists()


# Real Data Docs, built by kdflow's validate code with the assets that `make setup` fetched.

CONTRACT = DataContract(
    learnt_from={},
    features=["x0", "x1"],
    ranges={"x0": (-10.0, 10.0), "x1": (-10.0, 10.0)},
    classes=["0", "1"],
    class_proportions=[0.5, 0.5],
    proportion_tolerance=1.0,
    min_rows=5,
    max_rows=1000,
)


@pytest.fixture(scope="module")
def gx_sites(tmp_path_factory) -> tuple[Path, Path, int]:
    """One validation run's Data Docs as GX writes them, and a copy localised; with the number of references rewritten."""
    if not ready():
        pytest.skip(
            f"no Data Docs assets in {default_assets()}: run `python -m kdflow.data.offline_docs fetch` (part of `make setup`)"
        )
    root = tmp_path_factory.mktemp("gx")
    rng = np.random.default_rng(0)
    frame = to_frame(rng.normal(size=(20, 2)).astype(np.float32), rng.integers(0, 2, 20), CONTRACT)
    assert Suites(CONTRACT, root / "as-built").validate(frame, "train") == []
    shutil.copytree(root / "as-built", root / "offline")
    return root / "as-built", root / "offline", localise(root / "offline")


def validation_pages(site: Path) -> set[str]:
    return {p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html")}


def test_real_data_docs_load_nothing_remote_and_every_local_reference_exists(gx_sites):
    as_built, offline, rewritten = gx_sites
    assert len(validation_pages(offline)) == 2  # the split's two suites: train and train-all-features
    remote = sum(REMOTE.match(ref) is not None for page in as_built.rglob("*.html") for ref in references(page))
    assert rewritten == remote > 0
    for page in offline.rglob("*.html"):
        for ref in references(page):
            assert not REMOTE.match(ref), f"{page}: {ref}"
            assert (page.parent / ref).is_file() or ref.endswith("favicon.ico"), f"{page}: {ref}"  # GX misplaces the favicon


# Reports, once the page and its fonts have loaded and bootstrap-table has drawn every table
# (or 3 s of the page's virtual time have passed: a busy machine delays it past "load"), what only
# the vendored assets can produce: rows that bootstrap-table drew, Bootstrap's CSS on a .d-flex,
# Font Awesome's font on an icon.
PROBE = """<script>
const drawn = () => document.querySelectorAll("div.bootstrap-table").length >= document.querySelectorAll('[data-toggle="table"]').length;
const settled = (waited = 0) => drawn() || waited >= 3000
  ? Promise.resolve() : new Promise(done => setTimeout(done, 100)).then(() => settled(waited + 100));
window.addEventListener("load", () => document.fonts.ready.then(() => settled()).then(() => {
  const icon = document.querySelector(".fas"), flex = document.querySelector(".d-flex");
  const out = document.createElement("pre");
  out.id = "kdflow-probe";
  out.textContent = JSON.stringify({
    rows: [...document.querySelectorAll(".ge-index-page-validation-results-table tr[data-href]")].map(row => row.dataset.href),
    suites: [...document.querySelectorAll(".ge-index-page-validation-results-table a.ge-index-page-table-expectation-suite-link")]
      .map(a => a.textContent.trim()),
    tables: document.querySelectorAll("div.bootstrap-table").length,
    flex: flex && getComputedStyle(flex).display,
    icon_font: icon && getComputedStyle(icon).fontFamily,
    fonts: [...document.fonts].filter(font => font.status === "loaded").map(font => font.family),
  });
  document.body.append(out);
}));
</script>"""


def render(page: Path, tmp_path: Path) -> dict:
    """What PROBE reports about `page` in headless Chromium, with every host unresolvable. The
    probe goes into a copy beside the page, so that the page's relative references still hold."""
    probed = page.with_name(f"kdflow-probe-{page.name}")
    head, _, tail = page.read_text(encoding="utf-8").rpartition("</body>")
    probed.write_text(head + PROBE + "</body>" + tail, encoding="utf-8")
    profile = tmp_path / f"chromium-{page.stem}"
    dom = chromium(profile, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())  # CDNs unreachable
    probed.unlink()
    found = re.search(r'<pre id="kdflow-probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, f"the probe did not report; the DOM ends: {dom[-2000:]}"
    return json.loads(html.unescape(found[1]))


@needs_chromium
def test_offline_the_index_lists_the_validation_results_only_when_localised(gx_sites, tmp_path):
    as_built, offline, _ = gx_sites
    index = render(offline / "index.html", tmp_path)
    assert set(index["rows"]) == validation_pages(offline)
    assert sorted(index["suites"]) == ["train", "train-all-features"]
    assert index["flex"] == "flex" and index["icon_font"] == '"Font Awesome 6 Free"' and "Font Awesome 6 Free" in index["fonts"]
    # The control: as GX built it, offline, the same index lists nothing and is unstyled.
    bare = render(as_built / "index.html", tmp_path)
    assert bare["rows"] == [] and bare["flex"] == "block" and bare["fonts"] == []


@needs_chromium
def test_offline_a_validation_result_page_is_styled_when_localised(gx_sites, tmp_path):
    _, offline, _ = gx_sites
    page = offline / min(validation_pages(offline))
    result = render(page, tmp_path)
    assert result["tables"] == page.read_text().count('data-toggle="table"') > 0  # bootstrap-table's markup
    assert result["flex"] == "flex"  # Bootstrap's stylesheet
    assert result["icon_font"] == '"Font Awesome 6 Free"' and "Font Awesome 6 Free" in result["fonts"]  # the webfonts load
