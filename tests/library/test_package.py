"""The package root and the wheel a reader installs: the library, and nothing but the library."""

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlalchemy_cookbook

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "src" / "sqlalchemy_cookbook"


def test_exports_the_three_recipes() -> None:
    """`from sqlalchemy_cookbook import X` works for every name in __all__, from its own module."""
    homes = {name: getattr(sqlalchemy_cookbook, name).__module__ for name in sqlalchemy_cookbook.__all__}
    assert {
        "ExpireRelationshipOnFKChange": "sqlalchemy_cookbook.expire_on_fk_change",
        "PreFilteredQuery": "sqlalchemy_cookbook.prefilter",
        "UniqueObject": "sqlalchemy_cookbook.unique",
    } == homes


def test_site_extensions_do_not_import_sqlalchemy() -> None:
    """Every rebuild of the site imports its extensions; SQLAlchemy would add ~0.2 s to each."""
    code = (
        "import sys, cookbook_site.verified, cookbook_site.downloads, cookbook_site.run, cookbook_site.trim_css; "
        "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('sqlalchemy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "[]" == out.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel `pip wheel .` builds from this repository (offline: the build tools are local).

    Built from a copy of what the wheel is made of, so setuptools' build/ folder is not left in
    the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(LIBRARY, source / "src" / "sqlalchemy_cookbook", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
    )
    (built,) = out.glob("sqlalchemy_cookbook-*.whl")
    yield built


def test_wheel_holds_only_the_library(wheel: Path) -> None:
    """`unzip -l` of the wheel: the recipe modules, py.typed and the metadata; no site code."""
    names = zipfile.ZipFile(wheel).namelist()
    package = sorted(n for n in names if not n.startswith("sqlalchemy_cookbook-"))
    expected = sorted(
        f"sqlalchemy_cookbook/{p.name}" for p in LIBRARY.iterdir() if p.suffix == ".py" or p.name == "py.typed"
    )
    assert expected == package
    assert [] == [n for n in names if "cookbook_site" in n or "conftest" in n]


CHECK = r"""
import doctest, importlib, json, pkgutil, sys
from pathlib import Path

import sqlalchemy_cookbook

names = sorted(m.name for m in pkgutil.iter_modules(sqlalchemy_cookbook.__path__, "sqlalchemy_cookbook."))
for name in names:
    importlib.import_module(name)
loaded = sorted({m.split(".")[0] for m in sys.modules})

# Now the docstring examples, with the parsers the harness runs them with (Sybil, from the
# outer environment, appended last: SQLAlchemy and the library still come from this venv).
sys.path.append(sys.argv[1])
from sybil import Sybil
from sybil.document import PythonDocStringDocument
from sybil.parsers import rest

sybil = Sybil(
    parsers=[rest.DocTestParser(optionflags=doctest.ELLIPSIS), rest.PythonCodeBlockParser(), rest.SkipParser()],
    document_types={".py": PythonDocStringDocument},
)
ran = 0
for name in names:
    for example in sybil.parse(Path(importlib.import_module(name).__file__)).examples():
        example.evaluate()
        ran += 1
print(json.dumps({"file": sqlalchemy_cookbook.__file__, "modules": names, "loaded": loaded, "examples": ran}))
"""


def test_wheel_works_alone(wheel: Path, tmp_path: Path) -> None:
    """In a fresh venv with nothing but the wheel and its declared dependencies, every module
    imports without the site's packages, and the docstring examples pass."""
    import sqlalchemy

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The dependency the wheel declares, at the version this run tests (from pip's cache or PyPI).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            str(wheel),
            f"SQLAlchemy=={sqlalchemy.__version__}",
        ],
        check=True,
    )
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert {"SQLAlchemy", "sqlalchemy-cookbook", "typing_extensions"} == {
        line.split("==")[0] for line in installed.split()
    } - {"greenlet"}
    outer = str(Path(pytest.__file__).parent.parent)
    run = subprocess.run([str(python), "-c", CHECK, outer], cwd=tmp_path, capture_output=True, text=True)
    assert 0 == run.returncode, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert str(venv) in result["file"]
    assert [
        "sqlalchemy_cookbook.expire_on_fk_change",
        "sqlalchemy_cookbook.prefilter",
        "sqlalchemy_cookbook.unique",
    ] == result["modules"]
    assert [] == sorted(set(result["loaded"]) & {"sphinx", "docutils", "sybil", "pytest", "cookbook_site", "tests"})
    assert result["examples"] > 20, result


SYNC_ONLY = r"""
import sys

sys.modules["greenlet"] = None  # as if it were not installed: SQLAlchemy 2.1 does not install it

from sqlalchemy import String, create_engine, false, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from sqlalchemy_cookbook import ExpireRelationshipOnFKChange, PreFilteredQuery, UniqueObject


class Base(DeclarativeBase):
    pass


ExpireRelationshipOnFKChange.install(Base)


class Keyword(UniqueObject, Base):
    __tablename__ = "keyword"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    hidden: Mapped[bool] = mapped_column(default=False)


engine = create_engine("sqlite://")
Base.metadata.create_all(engine)
made = sessionmaker(engine)
shown = PreFilteredQuery(Keyword, lambda cls: cls.hidden == false(), opt_out="everything").install(made)
with made() as session:
    Keyword.as_unique(session, name="python")
    try:
        Keyword.as_unique(object(), name="python")
    except TypeError:
        pass
    print(session.scalars(select(Keyword.name)).all())
shown.uninstall(made)
print(sorted(m for m in sys.modules if m.startswith("sqlalchemy.ext.asyncio")))
"""


def test_the_sync_api_needs_no_greenlet() -> None:
    """Without greenlet, every recipe works with a Session, and nothing loads SQLAlchemy's asyncio extension
    (on SQLAlchemy 2.1 importing it raises without greenlet): only the async API needs it."""
    run = subprocess.run([sys.executable, "-c", SYNC_ONLY], capture_output=True, text=True)
    assert (0, "['python']\n[]\n") == (run.returncode, run.stdout), run.stderr
