"""Great Expectations Data Docs that work offline.

GX's Data Docs pages load jQuery, Bootstrap, bootstrap-table, Font Awesome, Vega and a few more
from CDNs. Opened without a network, the index lists no validation results (bootstrap-table
draws that table) and every page is unstyled. So:

- at environment setup (``python -m kdflow.data.offline_docs fetch``, run by ``make setup``; never at
  run time), `fetch` downloads the exact npm packages named in ``offline_docs.json``,
  checks each tarball against the registry's sha512 integrity, and keeps only the files the
  pages need, with each package's licence files and package.json, under
  ``<sys.prefix>/share/kdflow/data-docs-assets/<name>@<version>/``;
- after GX has built a site, `localise` copies those packages into ``static/vendor/`` of the
  site and points every CDN ``<script src>`` and ``<link href>`` of every page at them.

Without the assets (kdflow installed without ``make setup``), `localise` leaves the pages as
GX wrote them: online they still work.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

REGISTRY = "https://registry.npmjs.org"
REGISTRY_VARIABLE = "KDFLOW_NPM_REGISTRY"  # a mirror's base URL, for closed networks
VENDOR = Path("static") / "vendor"  # inside a Data Docs site, beside GX's own static/images and static/styles
TIMEOUT_S = 60


class FetchError(RuntimeError):
    """A package could not be downloaded, did not match its integrity, or lacks a listed file."""


@dataclass(frozen=True)
class Package:
    """One npm package of the manifest: what to keep from its tarball and which CDN URLs it replaces."""

    name: str
    version: str
    integrity: str
    license: str
    license_files: tuple[str, ...]
    files: tuple[str, ...]
    replaces: dict[str, str]  # CDN URL -> file in the package

    @property
    def folder(self) -> str:
        """Where it lives under an assets folder, as on unpkg: ``<name>@<version>`` (a scope is a parent folder)."""
        return f"{self.name}@{self.version}"

    @property
    def kept(self) -> tuple[str, ...]:
        """Every file kept from the tarball; package.json records name, version and licence."""
        return (*self.files, *self.license_files, "package.json")

    def tarball(self, registry: str) -> str:
        """The URL of this version's tarball on the npm `registry` (its base URL; a trailing slash is ignored)."""
        return f"{registry.rstrip('/')}/{self.name}/-/{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    def complete(self, assets: Path) -> bool:
        """True when every kept file is already under `assets`, so nothing needs fetching."""
        return all((assets / self.folder / path).is_file() for path in self.kept)


def manifest() -> list[Package]:
    """The packages listed in ``kdflow/data/offline_docs.json``."""
    raw = json.loads(resources.files("kdflow.data").joinpath("offline_docs.json").read_text(encoding="utf-8"))
    packages = [
        Package(
            p["name"],
            p["version"],
            p["integrity"],
            p["license"],
            tuple(p["license_files"]),
            tuple(p["files"]),
            dict(p["replaces"]),
        )
        for p in raw["packages"]
    ]
    for p in packages:
        if stray := set(p.replaces.values()) - set(p.files):
            raise ValueError(f"offline_docs.json: {p.folder} replaces CDN URLs with unlisted files {sorted(stray)}")
    return packages


def default_assets() -> Path:
    """Where `fetch` puts the assets and `localise` looks for them: inside the environment, so
    that each virtual environment has its own and ``make clean`` removes them."""
    return Path(sys.prefix) / "share" / "kdflow" / "data-docs-assets"


def ready(assets: Path | None = None) -> bool:
    """Whether `assets` (default: `default_assets()`) holds every package of the manifest, complete."""
    assets = assets or default_assets()
    return all(p.complete(assets) for p in manifest())


# Fetching, at setup.


def fetch(dest: Path | None = None, registry: str | None = None) -> list[str]:
    """Download, verify and unpack every package of the manifest into `dest` (default:
    `default_assets()`) from `registry` (default: $KDFLOW_NPM_REGISTRY, else npmjs.org).
    Packages already complete there are skipped; returns the ``name@version`` of those
    fetched. Raises `FetchError`."""
    dest = dest or default_assets()
    registry = registry or os.environ.get(REGISTRY_VARIABLE) or REGISTRY
    fetched = []
    for package in manifest():
        if not package.complete(dest):
            _install(package, _download(package, registry), dest)
            fetched.append(package.folder)
    return fetched


def _download(package: Package, registry: str) -> bytes:
    url = package.tarball(registry)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise FetchError(f"{package.folder}: could not download {url}: {error}") from error
    algorithm, _, expected = package.integrity.partition("-")
    if algorithm != "sha512":
        raise FetchError(f"{package.folder}: the manifest's integrity must be sha512, not {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if not hmac.compare_digest(actual, expected):
        raise FetchError(f"{package.folder}: {url} does not match its integrity (got sha512-{actual}); not installed")
    return data


def _install(package: Package, tarball: bytes, dest: Path) -> None:
    """Unpack the kept files into a temporary folder beside the target, then rename it into
    place, so that a package folder that exists is complete."""
    target = dest / package.folder
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        wanted = set(package.kept)
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            for member in tar:
                # npm tarballs hold one top folder (usually package/); paths are relative to it.
                path = member.name.partition("/")[2]
                source = tar.extractfile(member) if member.isfile() and path in wanted else None  # no links, no folders
                if source is not None:
                    wanted.discard(path)
                    # Only paths named in the manifest are written, so the tarball cannot write elsewhere.
                    (building / path).parent.mkdir(parents=True, exist_ok=True)
                    (building / path).write_bytes(source.read())
        if wanted:
            raise FetchError(f"{package.folder}: the tarball has no {sorted(wanted)}; the manifest is wrong")
        building.chmod(0o755)  # mkdtemp makes it private; the assets are for every user of the environment
        if target.exists():  # incomplete: left by an older manifest or by hand
            shutil.rmtree(target)
        try:
            building.rename(target)
        except OSError:
            if not package.complete(dest):  # else another setup got there first, which is as good
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


# Localising, after GX has built a site.

_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r"""\s(?:src|href)\s*=\s*(["'])(?P<url>.*?)\1""", re.IGNORECASE | re.DOTALL)
_REMOTE = re.compile(r"(https?:)?//")
# Subresource integrity pins the CDN's bytes and crossorigin asks for CORS; neither fits a local file.
_CDN_ONLY = re.compile(r"""\s(?:integrity|crossorigin)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?(?=[\s/>])""", re.IGNORECASE)


def localise(docs_dir: Path, assets: Path | None = None) -> int:
    """Copy the assets (default: `default_assets()`) into ``docs_dir/static/vendor/`` and point
    every CDN ``<script src>`` / ``<link href>`` of every page under `docs_dir` at them.
    Returns how many references it rewrote: 0 on a site already localised, and 0, leaving the
    pages unchanged, when the assets are missing or incomplete (``make setup`` not run)."""
    assets = assets or default_assets()
    if not ready(assets):
        return 0
    vendor = docs_dir / VENDOR
    local: dict[str, Path] = {}  # CDN URL -> file in the site
    for p in manifest():
        shutil.copytree(assets / p.folder, vendor / p.folder, dirs_exist_ok=True)
        local.update({url: vendor / p.folder / path for url, path in p.replaces.items()})
    unknown: set[str] = set()
    rewritten = sum(_rewrite(page, local, unknown) for page in sorted(docs_dir.rglob("*.html")))
    for url in sorted(unknown):  # a GX upgrade that loads something new: the manifest needs it too
        log.warning("Data Docs load %s, which offline_docs.json lacks; they need a network for it", url)
    return rewritten


def _rewrite(page: Path, local: dict[str, Path], unknown: set[str]) -> int:
    """Point the CDN references of one page at the site's copies; adds remote ones without a copy to `unknown`."""
    count = 0

    def tag(match: re.Match[str]) -> str:
        nonlocal count
        element, found = match[0], _URL.search(match[0])
        if found is None or found["url"] not in local:
            if found is not None and _REMOTE.match(found["url"]):
                unknown.add(found["url"])
            return element
        count += 1
        relative = urllib.parse.quote(os.path.relpath(local[found["url"]], page.parent).replace(os.sep, "/"), safe="/@")
        return _CDN_ONLY.sub("", element[: found.start("url")] + relative + element[found.end("url") :])

    localised = _TAG.sub(tag, page.read_text(encoding="utf-8"))
    if count:
        page.write_text(localised, encoding="utf-8")
    return count


def main(argv: list[str] | None = None) -> int:
    """The command line, ``fetch`` or ``localise``; returns the exit status: 0 done, 1 failed (said on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m kdflow.data.offline_docs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download the Data Docs assets from the npm registry (at setup)")
    get.add_argument("--dest", type=Path, default=None, help=f"default: {default_assets()}")
    get.add_argument("--registry", default=None, help=f"npm registry base URL (default: ${REGISTRY_VARIABLE}, else {REGISTRY})")
    put = commands.add_parser("localise", help="make a built Data Docs site work offline")
    put.add_argument("docs_dir", type=Path, help="the folder holding the site's index.html")
    put.add_argument("--assets", type=Path, default=None, help=f"default: {default_assets()}")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        dest = args.dest or default_assets()
        try:
            fetched = fetch(dest, args.registry)
        except FetchError as error:
            print(f"kdflow.data.offline_docs fetch failed: {error}", file=sys.stderr)
            return 1
        print(f"Data Docs assets in {dest}: " + (f"fetched {', '.join(fetched)}" if fetched else "all present"))
        return 0
    if not (args.docs_dir / "index.html").is_file():
        print(f"kdflow.data.offline_docs localise: no index.html in {args.docs_dir}", file=sys.stderr)
        return 1
    assets = args.assets or default_assets()
    rewritten = localise(args.docs_dir, assets)
    if rewritten == 0 and not ready(assets):
        print(
            f"kdflow.data.offline_docs localise: no assets in {assets}; run `python -m kdflow.data.offline_docs fetch` first",
            file=sys.stderr,
        )
        return 1
    print(f"{args.docs_dir}: {rewritten} CDN reference(s) now local")
    return 0


if __name__ == "__main__":
    sys.exit(main())
