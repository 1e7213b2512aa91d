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
And it reloads the browser when the whole build has ended; here it does so once the child has
written the pages, while the child goes on to the general index, search and what the extensions
write last (the next rebuild waits for it; a failure there is reported in the terminal).

Everything else is sphinx-autobuild's: its arguments, its file watching, its server and the
page reload.  Where ``os.fork`` does not exist (Windows), it runs as sphinx-autobuild does.

Run as ``python -m cookbook_site.preview`` with sphinx-autobuild's arguments.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

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


def _tell_when_written(channel: int) -> None:
    """In a child: write a byte to ``channel`` once the pages are written, before the indices,
    the search index and what the extensions write at the end, so the browser can reload then."""
    from sphinx.builders import Builder as SphinxBuilder

    write = SphinxBuilder.write

    def write_then_tell(self: SphinxBuilder, *args: Any, **kwargs: Any) -> None:
        write(self, *args, **kwargs)
        os.write(channel, b"w")

    SphinxBuilder.write = write_then_tell  # type: ignore[misc,method-assign]


def _send_status(connection: socket.socket, status: int) -> None:
    with connection:
        connection.sendall(f"{status}\n".encode())


def _finish(connection: socket.socket, child: int) -> None:
    """Wait for a child that has written its pages; send its exit status."""
    _send_status(connection, os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))


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
    here (what it loads stays loaded), every later one in a forked child.

    A request ``e`` (early) is told ``written`` as soon as the child has written the pages, so
    the browser can reload while the child goes on to the indices and search; the exit status
    follows when the child ends.  The next build starts once the last child has ended.
    """
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    _keep_templates_compiled()
    _keep_inventories_loaded()
    ready.set()
    built = False
    finishing: threading.Thread | None = None
    while True:
        connection, _ = server.accept()
        early = connection.recv(1) == b"e"
        if finishing is not None:
            finishing.join()
        sys.stdout.flush()
        sys.stderr.flush()
        if not built:
            built = True
            _send_status(connection, _build(sphinx_args))
            continue
        told, tell = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child leaves by os._exit)
            code = 1
            try:
                os.close(told)
                if early:
                    _tell_when_written(tell)
                code = _rebuild(sphinx_args)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(tell)
        written = os.read(told, 1)  # b"" when the child ended without writing the pages
        os.close(told)
        if written:
            connection.sendall(b"written\n")
        finishing = threading.Thread(target=_finish, args=(connection, child), daemon=True)
        finishing.start()


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
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.address)
        # Post-build commands run after the whole build, and the reload waits for them.
        connection.sendall(b"b" if self.post_build_commands else b"e")
        answers = connection.makefile("rb")
        first = answers.readline()
        if first == b"written\n":
            # The pages are written and the browser reloads now; the end of the build is reported
            # when it comes.
            threading.Thread(target=self._ended, args=(connection, answers), daemon=True).start()
        else:
            self._ended(connection, answers, first)

    def _ended(self, connection: socket.socket, answers: BinaryIO, status_line: bytes | None = None) -> None:
        """Report a build's exit status, as sphinx-autobuild does, once it comes."""
        with connection, answers:
            status = int((answers.readline() if status_line is None else status_line) or b"1")
        if status != 0:
            print(f"Sphinx exited with exit code: {status}", flush=True)
            print("The server keeps serving the last build; fix the error above and save again.", flush=True)
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
