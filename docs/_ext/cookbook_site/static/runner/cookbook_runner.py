"""Runs a recipe page's examples in the reader's browser (Pyodide), as the cookbook's tests run them.

The page's worker (``worker.mjs``) imports this module and calls :func:`start` for a fresh page,
then :func:`run_block` for each block, in page order.  What the tests do, this does too:

- one namespace per page, whose ``__name__`` is ``"__main__"``; every example runs in the page's
  own empty directory;
- a ``>>>`` example is compiled in ``"single"`` mode and its output compared with what the page shows by Sybil's
  own ``OutputChecker`` with the example's option flags (the page model gives them); an
  expected exception is compared by its last line(s), as doctest does;
- any other block is executed as a whole and what it prints is shown, not checked;
- warnings are errors (``filterwarnings = error`` in pytest's settings);
- the SQL that ``echo=True`` logs is printed without a timestamp, as the harness prints it.

A block the reader has edited runs as pasted at Python's prompt: statement after statement, each
expression's value echoed, an exception's traceback printed before the next statement runs.
Nothing here imports anything from the site: it is plain Python 3 and Sybil, the same on CPython,
where the tests run it too.
"""

from __future__ import annotations
import __future__

import ast
import gc
import inspect
import io
import json
import linecache
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

from sybil.evaluators.doctest import OutputChecker

_checker = OutputChecker()


class _StdoutHandler(logging.StreamHandler[Any]):
    """Writes each log message alone to whatever ``sys.stdout`` is at the time (as the harness)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_engine_logger = logging.getLogger("sqlalchemy.engine.Engine")
if not any(isinstance(h, _StdoutHandler) for h in _engine_logger.handlers):
    _engine_logger.addHandler(_StdoutHandler())


# --- One page ------------------------------------------------------------------------------------


class Page:
    """The state of one page: its namespace, its directory and the engines its examples made."""

    def __init__(self, name: str) -> None:
        self.name = name
        # As in a reader's script, and in the tests' runs: the page's classes belong to `__main__`.
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.cwd = tempfile.mkdtemp(prefix="cookbook-page-")
        self.engines: list[Any] = []
        #: The event loop statements run in when the page is pasted as into ``python -m asyncio``.
        self.loop: Any = None
        self.lines: list[str] = []
        linecache.cache.pop(self.name, None)

    # Tracebacks point at the page's own lines: the examples are compiled under the page's name,
    # padded to their line, and linecache knows the code at those lines.
    def _register(self, line: int, source: str) -> None:
        needed = line - 1 + source.count("\n") + 1
        if len(self.lines) < needed:
            self.lines.extend("\n" for _ in range(needed - len(self.lines)))
        for offset, text in enumerate(source.split("\n")):
            self.lines[line - 1 + offset] = text + "\n"
        linecache.cache[self.name] = (sum(map(len, self.lines)), None, self.lines, self.name)

    def _compile(self, source: str, line: int, mode: str, flags: int) -> Any:
        self._register(line, source)
        if self.loop is not None:
            flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        return compile("\n" * (line - 1) + source, self.name, mode, flags, dont_inherit=True)

    def _future_flags(self) -> int:
        flags = 0
        for name in __future__.all_feature_names:
            feature = self.namespace.get(name)
            if feature is getattr(__future__, name):
                flags |= feature.compiler_flag
        return flags

    def _execute(self, code: Any, doctest_name: bool) -> tuple[str, str, BaseException | None]:
        """Run compiled code in the page; return (stdout, stderr, exception or None)."""
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr, sys.displayhook
        added_name = doctest_name and "__name__" not in self.namespace
        if added_name:
            self.namespace["__name__"] = "__test__"
        before = os.getcwd()
        os.chdir(self.cwd)
        sys.stdout, sys.stderr, sys.displayhook = out, err, sys.__displayhook__
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                if self.loop is None:
                    exec(code, self.namespace)
                else:
                    # As `python -m asyncio` runs a statement: in the running loop, awaited if it awaits.
                    self.loop.run_until_complete(self._in_loop(code))
        except BaseException as exc:  # noqa: BLE001 - the reader sees it, SystemExit too
            return out.getvalue(), err.getvalue(), exc
        finally:
            sys.stdout, sys.stderr, sys.displayhook = saved
            os.chdir(before)
            if added_name:
                self.namespace.pop("__name__", None)
            if not doctest_name:
                self.namespace.pop("__builtins__", None)
        return out.getvalue(), err.getvalue(), None

    async def _in_loop(self, code: Any) -> None:
        result = eval(code, self.namespace)
        if inspect.iscoroutine(result):
            await result

    @staticmethod
    def _traceback(exc: BaseException) -> str:
        tb = exc.__traceback__
        if tb is not None:
            tb = tb.tb_next  # the frame of this runner is not the reader's business
        return "".join(traceback.format_exception(type(exc), exc, tb))

    def doctest(self, example: dict[str, Any]) -> dict[str, Any]:
        source: str = example["source"]
        flags: int = example["flags"]
        out, err = "", ""
        raised: BaseException | None = None
        try:
            code = self._compile(source, example["line"], "single", self._future_flags())
        except SyntaxError as exc:  # doctest reports it as the example's exception
            raised = exc
        else:
            out, err, raised = self._execute(code, doctest_name=True)
        result: dict[str, Any] = {"output": out, "stderr": err}
        want: str = example["want"]
        exc_msg: str | None = example["exc_msg"]
        if raised is None:
            result["status"] = "match" if exc_msg is None and _checker.check_output(want, out, flags) else "differ"
            return result
        formatted = traceback.format_exception_only(type(raised), raised)
        if isinstance(raised, SyntaxError):
            formatted = [line for line in formatted if not line.startswith(" ")]  # as doctest does
        result["exception"] = formatted[-1]
        result["traceback"] = self._traceback(raised)
        matched = exc_msg is not None and _checker.check_output(exc_msg, formatted[-1], flags)
        result["status"] = "match" if matched else "differ"
        return result

    def code(self, example: dict[str, Any]) -> dict[str, Any]:
        out, err = "", ""
        raised: BaseException | None = None
        try:
            # A block's line is its fence's (or its `% invisible-code-block` line's); the code follows.
            compiled = self._compile(example["source"], example["line"] + 1, "exec", 0)
        except SyntaxError as exc:
            raised = exc
        else:
            out, err, raised = self._execute(compiled, doctest_name=False)
        result: dict[str, Any] = {"output": out, "stderr": err, "status": "ran"}
        if raised is not None:
            result.update(status="error", exception=traceback.format_exception_only(type(raised), raised)[-1])
            result["traceback"] = self._traceback(raised)
        return result

    def edited(self, source: str, line: int) -> list[dict[str, Any]]:
        """A block as the reader changed it: each statement as typed at Python's prompt."""
        self.lines = []  # the page's own lines no longer describe this code
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            return [
                {
                    "line": line,
                    "source": source,
                    "status": "error",
                    "output": "",
                    "stderr": "",
                    "exception": traceback.format_exception_only(type(exc), exc)[-1],
                    "traceback": "".join(traceback.format_exception_only(type(exc), exc)),
                }
            ]
        results = []
        source_lines = source.split("\n")
        for statement in tree.body:
            end = statement.end_lineno or statement.lineno
            first = statement.lineno
            decorators: list[ast.expr] = getattr(statement, "decorator_list", [])
            if decorators:
                first = min(d.lineno for d in decorators)
            text = "\n".join(source_lines[first - 1 : end])
            self._register(line + first - 1, text)
            module = ast.Interactive(body=[statement])
            ast.increment_lineno(module, line - 1)
            flags = self._future_flags() | (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if self.loop is not None else 0)
            code = compile(module, self.name, "single", flags, dont_inherit=True)
            out, err, raised = self._execute(code, doctest_name=True)
            result: dict[str, Any] = {
                "line": line + first - 1,
                "source": text,
                "output": out,
                "stderr": err,
                "status": "edited",
            }
            if raised is not None:
                result["exception"] = traceback.format_exception_only(type(raised), raised)[-1]
                result["traceback"] = self._traceback(raised)
            results.append(result)
        return results

    def close(self) -> None:
        try:
            from sqlalchemy.orm import close_all_sessions

            close_all_sessions()
        except Exception:  # noqa: BLE001 - the page's objects may be in any state
            pass
        self.namespace.clear()
        gc.collect()
        for engine in self.engines:
            try:
                engine.dispose()
            except Exception:  # noqa: BLE001 - a page may have left an engine in any state
                pass
        shutil.rmtree(self.cwd, ignore_errors=True)
        linecache.cache.pop(self.name, None)


_page: Page | None = None
_real_create_engine: Any = None


def _track_engines() -> None:
    """Remember every engine a page makes, so a fresh start can dispose of them (as the harness)."""
    global _real_create_engine
    import sqlalchemy
    import sqlalchemy.engine

    if _real_create_engine is not None:
        return
    _real_create_engine = sqlalchemy.create_engine

    def create_engine(url: Any, **kwargs: Any) -> Any:
        engine = _real_create_engine(url, **kwargs)
        if _page is not None:
            _page.engines.append(engine)
        return engine

    sqlalchemy.create_engine = create_engine
    sqlalchemy.engine.create_engine = create_engine


def start(name: str) -> None:
    """Forget the previous run (its objects, engines and files) and start the page afresh."""
    global _page
    _track_engines()
    if _page is not None:
        _page.close()
    _page = Page(name)


def run_block(request: str) -> str:
    """Run one block (JSON: its examples, or the reader's edited code); return the results as JSON."""
    block: dict[str, Any] = json.loads(request)
    if _page is None:
        start(block.get("page", "page"))
    assert _page is not None
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    if block.get("edited") is not None:
        first: dict[str, Any] = block["examples"][0] if block["examples"] else {"line": 0, "kind": "code"}
        results = _page.edited(block["edited"], int(first["line"]) + (1 if first["kind"] == "code" else 0))
    else:
        for example in block["examples"]:
            if example.get("skip"):
                results.append({"line": example["line"], "status": "skipped", "reason": example["skip"], "output": ""})
                continue
            run = _page.doctest if example["kind"] == "doctest" else _page.code
            result = run(example)
            result["line"] = example["line"]
            results.append(result)
    return json.dumps({"block": block["block"], "results": results, "seconds": time.perf_counter() - started})


def versions() -> str:
    import sqlite3

    import sqlalchemy

    return json.dumps(
        {
            "python": sys.version.split()[0],
            "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version,
        }
    )


def paste(blocks: list[str], awaiting: bool = False) -> list[dict[str, Any]]:
    """Blocks as a reader pastes them into Python's prompt, one after another, in one fresh page.

    Each statement runs on its own, its value echoed, and an exception does not stop the next
    (see :meth:`Page.edited`); with ``awaiting``, as into ``python -m asyncio``: top-level
    ``await`` allowed, every statement run in one event loop.  Returns, for each exception, the
    block, the line in it and the exception's class name.
    """
    start("pasted")
    assert _page is not None
    if awaiting:
        import asyncio

        _page.loop = asyncio.new_event_loop()
    raised = []
    for index, code in enumerate(blocks):
        for result in _page.edited(code, 1):
            if "exception" in result:
                name = result["exception"].split(":")[0].strip().rpartition(".")[2]
                raised.append({"block": index, "line": result["line"], "error": name})
    return raised


if __name__ == "__main__":
    # The browser tests' paste check on CPython:
    # `python cookbook_runner.py paste|paste-asyncio BLOCKS.json OUT.json`.
    if len(sys.argv) != 4 or sys.argv[1] not in ("paste", "paste-asyncio"):
        sys.exit("usage: python cookbook_runner.py paste|paste-asyncio BLOCKS.json OUT.json")
    with open(sys.argv[2], encoding="utf-8") as given:
        pasted = paste(json.load(given), awaiting=sys.argv[1] == "paste-asyncio")
    with open(sys.argv[3], "w", encoding="utf-8") as out:
        json.dump(pasted, out)
