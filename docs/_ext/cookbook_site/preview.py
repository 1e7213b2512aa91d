"""``make serve``: sphinx-autobuild, with each rebuild forked from a process that has Sphinx loaded.

sphinx-autobuild starts a new Python for every rebuild (``python -m sphinx build ...``), which
imports Sphinx, the theme and every extension, compiles the theme's templates and the
highlighter's patterns, and only then reads the one page that changed: most of a one-page
rebuild.  Here one process (the *warm* process, started before the server) does the first build
itself, so all of that stays loaded, and then forks a child for every rebuild.  The child starts
with everything the first build loaded and forgets only the project's own modules
(``cookbook_site``, ``sqlalchemy_cookbook``, anything else under this folder outside the venv), so
an edit to an extension or to the recipe library is built with the code as it is now.  A change
to the installed packages needs a restart, as with any server.

The theme's templates are compiled once too: the warm process keeps Jinja's bytecode in memory,
which every child inherits (a template that changed is compiled again); and intersphinx, which
reads and parses local inventories on every build, reuses the ones the environment holds while
their files are unchanged (as it does for a remote one within its cache limit).  sphinx-autobuild hands
each rebuild to a new process of a process pool; here a thread sends it to the warm process.

Everything else is sphinx-autobuild's: its arguments, its file watching, its server and the
page reload.  Where ``os.fork`` does not exist (Windows), it runs as sphinx-autobuild does.

Run as ``python -m cookbook_site.preview`` with sphinx-autobuild's arguments.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import sphinx_autobuild.__main__ as autobuild
import watchfiles
from sphinx_autobuild.build import Builder
from sphinx_autobuild.server import RebuildServer
from sphinx_autobuild.utils import show_message

#: The folder whose modules a rebuild imports afresh: the project (this package sits in docs/_ext/).
PROJECT = Path(__file__).resolve().parents[3]


def _project_module(module: Any) -> bool:
    """Whether a loaded module is the project's own (under PROJECT, not in the venv)."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(PROJECT) and not path.is_relative_to(Path(sys.prefix).resolve())


class _Bytecode(jinja2.BytecodeCache):
    """Compiled templates, in this process's memory (and so in every child forked from it)."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.kept:
            bucket.bytecode_from_string(self.kept[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.kept[bucket.key] = bucket.bytecode_to_string()


def _keep_templates_compiled() -> None:
    """Give every Jinja environment Sphinx makes the one bytecode cache."""
    from sphinx.jinja2glue import BuiltinTemplateLoader

    cache = _Bytecode()
    init = BuiltinTemplateLoader.init

    def init_with_cache(self: BuiltinTemplateLoader, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.environment.bytecode_cache = cache

    BuiltinTemplateLoader.init = init_with_cache  # type: ignore[method-assign]


def _keep_inventories_loaded() -> None:
    """Let intersphinx skip a local inventory file that has not changed since the environment loaded it."""
    from sphinx.ext.intersphinx import _load

    fetch = _load._fetch_inventory_group

    def fetch_if_changed(**kwargs: Any) -> bool:
        project, cache, srcdir = kwargs["project"], kwargs["cache"], Path(kwargs["srcdir"])
        files = [srcdir / where for where in project.locations if where and "://" not in where]
        kept = cache.get(project.target_uri)
        if kept is not None and files and all(f.is_file() and f.stat().st_mtime < kept[1] for f in files):
            return False
        return bool(fetch(**kwargs))

    _load._fetch_inventory_group = fetch_if_changed


def _build(sphinx_args: list[str]) -> int:
    from sphinx.cmd.build import build_main

    return build_main(sphinx_args)


def _rebuild(sphinx_args: list[str]) -> int:
    """A forked child's build: the project's modules imported afresh, then Sphinx."""
    for name in [name for name, module in sys.modules.items() if _project_module(module)]:
        del sys.modules[name]
    return _build(sphinx_args)


def _warm(address: str, sphinx_args: list[str], ready: Any) -> None:
    """The warm process: answer each request with a build's exit status, the first one built
    here (what it loads stays loaded), every later one in a forked child."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    _keep_templates_compiled()
    _keep_inventories_loaded()
    ready.set()
    built = False
    while True:
        connection, _ = server.accept()
        with connection:
            connection.recv(1)
            sys.stdout.flush()
            sys.stderr.flush()
            if not built:
                built = True
                status = _build(sphinx_args)
            else:
                child = os.fork()
                if child == 0:  # pragma: no cover (the child leaves by os._exit)
                    code = 1
                    try:
                        code = _rebuild(sphinx_args)
                    finally:
                        sys.stdout.flush()
                        sys.stderr.flush()
                        os._exit(code)
                status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            connection.sendall(json.dumps(status).encode())


class WarmBuilder(Builder):  # type: ignore[misc]
    """sphinx-autobuild's builder, building through the warm process."""

    def __init__(self, sphinx_args: list[str], **kwargs: Any) -> None:
        super().__init__(sphinx_args, **kwargs)
        folder = tempfile.mkdtemp(prefix="cookbook-preview-")
        atexit.register(shutil.rmtree, folder, True)  # the socket's folder goes with the server
        self.address = str(Path(folder) / "warm.sock")
        context = multiprocessing.get_context("fork")
        ready = context.Event()
        process = context.Process(target=_warm, args=(self.address, list(sphinx_args), ready), daemon=True)
        process.start()
        ready.wait()

    def __call__(self, *, changed_paths: Sequence[Path]) -> None:
        if changed_paths:
            names = [p.as_posix() for p in changed_paths[:5] if p.exists()]
            if names:
                show_message(f"Detected changes ({', '.join(names)})")
            show_message("Rebuilding...")
        if self._run_commands(self.pre_build_commands, "pre-build") != 0:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(self.address)
            connection.sendall(b"b")
            status = json.loads(connection.recv(64) or b"1")
        if status != 0:
            print(f"Sphinx exited with exit code: {status}")
            print("The server keeps serving the last build; fix the error above and save again.")
        else:
            self._run_commands(self.post_build_commands, "post-build")
        show_message(f"Serving on {self.uri}")


class ThreadedRebuildServer(RebuildServer):  # type: ignore[misc]
    """sphinx-autobuild's watcher, calling the builder in a thread rather than a new process."""

    async def watch(self) -> None:
        # step: how long the watcher waits for more changes before it yields (50 ms by default;
        # an editor's save is a few events within a millisecond or two).
        watched = watchfiles.awatch(*self.paths, watch_filter=lambda _, path: not self.ignore(path), step=20)
        async for changes in watched:
            changed_paths = [Path(path).resolve() for _, path in changes]
            await asyncio.to_thread(self.change_callback, changed_paths=changed_paths)
            self.flag.set()


def main(argv: Sequence[str] = ()) -> None:
    if hasattr(os, "fork"):
        autobuild.Builder = WarmBuilder
        autobuild.RebuildServer = ThreadedRebuildServer
    autobuild.main(list(argv) or sys.argv[1:])


if __name__ == "__main__":
    main()
