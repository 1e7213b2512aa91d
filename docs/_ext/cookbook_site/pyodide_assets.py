"""Fetch what the in-browser "Run" needs: Pyodide and the pure-Python wheels it runs, self-hosted.

``make pyodide`` runs ``python -m cookbook_site.pyodide_assets``.  It writes, into
``docs/_pyodide/dist/`` (ignored by git; the site build copies it to ``_pyodide/`` in the output):

- ``pyodide.mjs``, ``pyodide.asm.mjs``, ``pyodide.asm.wasm`` and ``python_stdlib.zip`` from the
  npm registry's ``pyodide`` package at :data:`PYODIDE_VERSION` (``npm pack``; the tarball's
  integrity is checked against the value pinned here);
- the pure-Python wheels of SQLAlchemy and typing_extensions, and Sybil's (whose doctest
  output checker compares what the browser printed with the page, as the tests do), at exactly
  the versions ``requirements.txt`` pins (``pip download``);
- ``pyodide-lock.json``: the site's own lock file, naming only those wheels (Pyodide's own
  lock file pins another SQLAlchemy and points at a CDN).

When Node.js is there, the wheels and the standard-library modules SQLAlchemy imports are also
compiled to bytecode by Pyodide's own Python (run in Node), so the browser does not compile them
on every start: the ``.pyc`` files sit beside the sources (tracebacks still show source lines),
as unchecked hash-based pycs (PEP 552), and the wheels are renamed ``cp314`` to say so.
Without Node.js the source wheels are used as they are, and starting is slower.

Run again, it does nothing unless a pinned version changed (``--force`` fetches anyway).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

#: The Pyodide release, from the npm registry.
PYODIDE_VERSION = "314.0.7"
#: ``npm view pyodide@314.0.7 dist.integrity``: what the tarball must hash to.
PYODIDE_INTEGRITY = "sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+SNvi/6V5JEsOlD2R1A=="
#: The files of the npm package the browser loads.
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")
#: The Python packages the examples need in the browser, pinned by requirements.txt.
WHEELS = ("SQLAlchemy", "typing_extensions", "sybil")
#: Where the assets are kept, relative to the project root (the folder holding conf.py).
DIST = Path("docs/_pyodide/dist")
LOCK_FILE = "pyodide-lock.json"
MANIFEST = "manifest.json"
#: Bump when what this module writes changes, so ``make pyodide`` rebuilds.
LAYOUT = 5


class FetchError(Exception):
    """A step of the fetch failed; the message says which and what to do."""


def pinned_versions(requirements: Path) -> dict[str, str]:
    """``{"SQLAlchemy": "2.1.9", ...}`` for :data:`WHEELS`, as requirements.txt pins them."""
    pins: dict[str, str] = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            pins[_normalize(match.group(1))] = match.group(2)
    found = {}
    for name in WHEELS:
        version = pins.get(_normalize(name))
        if version is None:
            raise FetchError(f"{requirements} does not pin {name} (a line '{name}==X.Y.Z')")
        found[name] = version
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError:
        raise FetchError(f"{what}: {command[0]} is not installed") from None
    if done.returncode != 0:
        raise FetchError(f"{what} failed ({' '.join(command)}):\n{done.stdout[-3000:]}")
    return done.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: The registry's address for the same tarball, for machines without npm.
PYODIDE_TARBALL = f"https://registry.npmjs.org/pyodide/-/pyodide-{PYODIDE_VERSION}.tgz"


def fetch_pyodide(into: Path, work: Path) -> None:
    """Pyodide's npm tarball, checked against the pinned integrity, unpacked into ``into``.

    ``npm pack`` fetches it where npm is installed (so npm's own registry settings apply);
    elsewhere it is downloaded from the registry directly: a reader needs only Python.
    """
    tarball = work / f"pyodide-{PYODIDE_VERSION}.tgz"
    if shutil.which("npm") is not None:
        _run(["npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--silent", "--pack-destination", str(work)], "npm pack")
    else:
        try:
            with urllib.request.urlopen(PYODIDE_TARBALL, timeout=60) as response:
                tarball.write_bytes(response.read())
        except OSError as exc:
            raise FetchError(f"downloading {PYODIDE_TARBALL} failed: {exc}") from None
    algorithm, _, expected = PYODIDE_INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if got != expected:
        raise FetchError(f"{tarball.name}: integrity {algorithm}-{got} is not the pinned {PYODIDE_INTEGRITY}")
    with tarfile.open(tarball) as archive:
        for name in PYODIDE_FILES:
            member = archive.extractfile(f"package/{name}")
            if member is None:
                raise FetchError(f"{tarball.name} has no package/{name}")
            (into / name).write_bytes(member.read())


def fetch_wheels(into: Path, versions: dict[str, str]) -> dict[str, Path]:
    """The pure-Python wheels (``py3-none-any``) of :data:`WHEELS`, by ``pip download``."""
    requirements = [f"{name}=={version}" for name, version in versions.items()]
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "any",
            "--implementation",
            "py",
            "--abi",
            "none",
            "--python-version",
            "3.14",
            "--dest",
            str(into),
            *requirements,
        ],
        "pip download",
    )
    found = {}
    for name, version in versions.items():
        prefix = f"{_normalize(name).replace('-', '_')}-{version}-"
        wheels = [p for p in into.glob("*.whl") if p.name.lower().startswith(prefix)]
        if len(wheels) != 1:
            raise FetchError(f"pip download did not give one wheel of {name} {version}: {[p.name for p in wheels]}")
        found[name] = wheels[0]
    return found


# Runs in Node: Pyodide's own Python compiles the wheels and the stdlib modules they import.
_COMPILE_MJS = r"""
import { loadPyodide } from "PYODIDE_MJS";
const [dist, work] = process.argv.slice(2);
const py = await loadPyodide({ indexURL: dist + "/", lockFileURL: dist + "/pyodide-lock.json" });
py.FS.mkdirTree("/work");
py.FS.mount(py.FS.filesystems.NODEFS, { root: work }, "/work");
await py.loadPackage(JSON.parse(process.argv[4]), { messageCallback: () => {} });
py.runPython(await (await import("node:fs/promises")).readFile(work + "/compile.py", "utf8"));
"""

_COMPILE_PY = r'''
"""Compile the modules the examples import, from the wheels and the stdlib, with this very Python."""
import importlib, importlib.util, json, os, pkgutil, sys, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

SITE = "/lib/python3.14/site-packages"
STDLIB = "/lib/python314.zip"
job = json.load(open("/work/job.json"))
TAG = sys.implementation.cache_tag


def pyc(source, filename):
    code = compile(source, filename, "exec", dont_inherit=True)
    return _code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False)


# Import what the examples may use, so sys.modules shows which modules to compile: the packages
# and their subpackages but for the dialects of other databases, typing helpers and test suites.
def walk(name):
    try:
        module = importlib.import_module(name)
    except Exception:
        return  # needs what the browser has not got (greenlet, a driver)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name not in job["skip"]:
            walk(f"{name}.{info.name}")


for name in job["packages"]:
    walk(name)
for name in job["stdlib_extra"]:
    importlib.import_module(name)
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
used = sorted(f[len(STDLIB) + 1:] for f in files if f.startswith(STDLIB + "/"))
used_site = {f[len(SITE) + 1:] for f in files if f.startswith(SITE + "/")}

for source, target in job["wheels"]:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as new:
        record = None
        added = []
        for item in old.infolist():
            data = old.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                record = (item, data)
                continue
            new.writestr(item, data)
            if item.filename in used_site:
                folder, _, file = item.filename.rpartition("/")
                name = f"{folder}/__pycache__/{file[:-3]}.{TAG}.pyc" if folder else f"__pycache__/{file[:-3]}.{TAG}.pyc"
                new.writestr(name, pyc(data, f"{SITE}/{item.filename}"))
                added.append(name)
        if record is not None:
            item, data = record
            lines = data.decode().rstrip("\n").split("\n")
            new.writestr(item, "\n".join(lines + [f"{name},," for name in added]) + "\n")

source, target = job["stdlib"]
with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as new:
    wanted = set(used)
    for item in old.infolist():
        data = old.read(item)
        new.writestr(item, data)
        if item.filename in wanted:
            new.writestr(item.filename[:-3] + ".pyc", pyc(data, f"{STDLIB}/{item.filename}"))
json.dump({"stdlib": used, "site": sorted(used_site)}, open("/work/compiled.json", "w"))
'''

#: Subpackages left as source: other databases' dialects, typing plugins, test suites, asyncio.
NOT_COMPILED = ("postgresql", "mysql", "mssql", "oracle", "testing", "mypy", "asyncio", "tests")
#: Stdlib modules the browser-side runner imports besides what SQLAlchemy needs.
RUNNER_STDLIB = (
    "ast",
    "doctest",
    "gc",
    "json",
    "linecache",
    "logging",
    "shutil",
    "tempfile",
    "traceback",
    "warnings",
    "sqlite3",
)


def _entry(path: Path, name: str, version: str, imports: list[str], depends: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "file_name": path.name,
        "install_dir": "site",
        "sha256": _sha256(path),
        "package_type": "package",
        "imports": imports,
        "depends": depends,
        "unvendored_tests": False,
    }


def write_lock(dist: Path, info: dict[str, Any], wheels: dict[str, Path], versions: dict[str, str]) -> None:
    """The site's own ``pyodide-lock.json``: only our wheels, by file name beside it."""
    lock = {
        "info": info,
        "packages": {
            "sqlalchemy": _entry(
                wheels["SQLAlchemy"], "sqlalchemy", versions["SQLAlchemy"], ["sqlalchemy"], ["typing-extensions"]
            ),
            "typing-extensions": _entry(
                wheels["typing_extensions"],
                "typing-extensions",
                versions["typing_extensions"],
                ["typing_extensions"],
                [],
            ),
            "sybil": _entry(wheels["sybil"], "sybil", versions["sybil"], ["sybil"], []),
        },
    }
    (dist / LOCK_FILE).write_text(json.dumps(lock, indent=1) + "\n", encoding="utf-8")


#: What Pyodide 314.0.7's own lock file says of its platform (its ``info``), kept in ours.
PYODIDE_INFO = {"abi_version": "2026_0", "arch": "wasm32", "platform": "emscripten_5_0_3", "python": "3.14.2"}


def precompile(dist: Path, work: Path, wheels: dict[str, Path]) -> tuple[dict[str, Path], int]:
    """Compile the wheels and the stdlib modules they use, in Pyodide under Node. Returns the
    new wheels and how many stdlib modules were compiled."""
    job_dir = work / "compile"
    job_dir.mkdir()
    compiled = {}
    pairs = []
    for name, wheel in wheels.items():
        parts = wheel.name.split("-")  # name-version-py3-none-any.whl
        target = job_dir / "-".join([parts[0], parts[1], "cp314", "none", "any.whl"])
        shutil.copy(wheel, job_dir / wheel.name)
        pairs.append([f"/work/{wheel.name}", f"/work/{target.name}"])
        compiled[name] = target
    shutil.copy(dist / "python_stdlib.zip", job_dir / "python_stdlib.zip")
    job = {
        "packages": ["sqlalchemy", "typing_extensions", "sybil.evaluators.doctest"],
        "stdlib_extra": list(RUNNER_STDLIB),
        "skip": list(NOT_COMPILED),
        "wheels": pairs,
        "stdlib": ["/work/python_stdlib.zip", "/work/python_stdlib.compiled.zip"],
    }
    (job_dir / "job.json").write_text(json.dumps(job))
    (job_dir / "compile.py").write_text(_COMPILE_PY)
    script = job_dir / "compile.mjs"
    script.write_text(_COMPILE_MJS.replace("PYODIDE_MJS", (dist / "pyodide.mjs").resolve().as_uri()))
    _run(
        ["node", str(script), str(dist.resolve()), str(job_dir), json.dumps(["sqlalchemy", "sybil"])],
        "compiling in Pyodide (node)",
    )
    shutil.move(job_dir / "python_stdlib.compiled.zip", dist / "python_stdlib.zip")
    report = json.loads((job_dir / "compiled.json").read_text())
    return compiled, len(report["stdlib"]) + len(report["site"])


def manifest_for(versions: dict[str, str], compiled: bool) -> dict[str, Any]:
    return {"layout": LAYOUT, "pyodide": PYODIDE_VERSION, "wheels": versions, "compiled": compiled}


def up_to_date(dist: Path, wanted: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((dist / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    files: list[str] = manifest.get("files", [])
    same = {k: manifest.get(k) for k in wanted} == wanted
    return same and bool(files) and all((dist / f).is_file() for f in files)


def fetch(root: Path, *, force: bool = False, compile_bytecode: bool | None = None) -> Path:
    """Make ``root/docs/_pyodide/dist`` hold the runner's assets; return that folder."""
    dist = root / DIST
    versions = pinned_versions(root / "requirements.txt")
    if compile_bytecode is None:
        compile_bytecode = shutil.which("node") is not None
    wanted = manifest_for(versions, compile_bytecode)
    if not force and up_to_date(dist, wanted):
        print(
            f"pyodide: {dist.relative_to(root)} is up to date (Pyodide {PYODIDE_VERSION}, "
            + ", ".join(f"{n} {v}" for n, v in versions.items())
            + ")"
        )
        return dist
    with tempfile.TemporaryDirectory(prefix="cookbook-pyodide-") as folder:
        work = Path(folder)
        staging = work / "dist"
        staging.mkdir()
        how = "npm pack" if shutil.which("npm") else f"no npm here: downloading {PYODIDE_TARBALL} for"
        print(f"pyodide: {how} pyodide@{PYODIDE_VERSION}", flush=True)
        fetch_pyodide(staging, work)
        print("pyodide: pip download " + " ".join(f"{n}=={v}" for n, v in versions.items()), flush=True)
        downloads = work / "wheels"
        downloads.mkdir()
        wheels = fetch_wheels(downloads, versions)
        for name, wheel in wheels.items():
            wheels[name] = Path(shutil.copy(wheel, staging / wheel.name))
        write_lock(staging, PYODIDE_INFO, wheels, versions)
        if compile_bytecode:
            print("pyodide: compiling the wheels and the stdlib modules they use, in Pyodide (node)", flush=True)
            compiled, count = precompile(staging, work, wheels)
            for name, wheel in wheels.items():
                wheel.unlink()
                wheels[name] = Path(shutil.copy(compiled[name], staging / compiled[name].name))
            write_lock(staging, PYODIDE_INFO, wheels, versions)
            print(f"pyodide: {count} modules compiled", flush=True)
        elif shutil.which("node") is None:
            print("pyodide: node is not installed: the wheels stay source-only (Run starts about twice as slow)")
        else:
            print("pyodide: --no-compile: the wheels stay source-only (Run starts about twice as slow)")
        files = sorted(p.name for p in staging.iterdir())
        (staging / MANIFEST).write_text(json.dumps({**wanted, "files": files}, indent=1) + "\n")
        if dist.exists():
            shutil.rmtree(dist)
        dist.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, dist)
    size = sum(p.stat().st_size for p in dist.iterdir())
    print(f"pyodide: wrote {dist.relative_to(root)} ({size / 1e6:.1f} MB)")
    return dist


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project (holding requirements.txt)")
    parser.add_argument("--force", action="store_true", help="fetch again even if up to date")
    parser.add_argument("--no-compile", action="store_true", help="keep the wheels source-only")
    args = parser.parse_args(argv)
    try:
        fetch(args.root, force=args.force, compile_bytecode=False if args.no_compile else None)
    except FetchError as exc:
        sys.exit(f"pyodide: {exc}")


if __name__ == "__main__":
    main()
