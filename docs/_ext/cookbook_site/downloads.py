"""Sphinx extension: "Download this recipe", each recipe page's verified examples as one script.

At build time every recipe page is read with the page model (:mod:`cookbook_site.page`, the
reading the test harness runs), so the script holds exactly the examples the tests run on
SQLite, in page order:

- doctest prompts are dropped and the output the page shows is kept, as ``#>`` comments;
  an expression the ``>>>`` prompt would echo is passed to a small ``show()`` helper, so the
  script prints what the page shows;
- an example the page shows raising is wrapped in ``try``/``except`` for that exception,
  whose traceback is printed before the script goes on;
- blocks in another backend's tab (PostgreSQL, MariaDB) are left out, with a note;
- a page with Session and AsyncSession tabs gets two scripts, ``<page>.py`` with its Session
  tabs and ``<page>-async.py`` with its AsyncSession tabs, as the tests run it twice;
  blocks a ``% skip:`` line skips are commented out, with the reason;
- hidden ``% invisible-code-block`` checks are kept (they only assert).

Each page gets a link under its short answer; the scripts are written to ``_recipes/`` in the
output.  :func:`output_problem` tells whether a run of a script printed what the page shows,
with the comparison the tests use.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.osutil import relative_uri
from sphinx.writers.html5 import HTML5Translator

from cookbook_site import page as page_model
from cookbook_site.page import (
    API_LABELS,
    BACKEND_LABELS,
    DEFAULT_BACKEND,
    Example,
    PageError,
    apis_of,
    installed_series,
    output_matches,
)
from cookbook_site.pagedata import PageData, add_html_only_node

# Read from the installed distribution: importing SQLAlchemy here would cost every build ~0.2 s.
SQLALCHEMY_VERSION = version("SQLAlchemy")

logger = logging.getLogger(__name__)

#: Where the scripts go in the HTML output.
OUTPUT_FOLDER = "_recipes"
#: The backend the scripts run on; the other tabs are left out.
SCRIPT_BACKEND = DEFAULT_BACKEND
#: The SQLAlchemy series the scripts are verified on: the one the site is built with.
SCRIPT_SERIES = installed_series()

#: What the extension keeps of each page across a build: its script, and its AsyncSession script.
STORES = {"session": PageData("cookbook_recipe_scripts"), "async": PageData("cookbook_recipe_scripts_async")}
#: What each API's script is called after the page (``<page>.py``, ``<page>-async.py``).
SUFFIXES = {"session": "", "async": "-async"}


# --- Writing the script -----------------------------------------------------------------------

#: Calls the ``>>>`` prompt echoes nothing for: not worth a ``show()`` in the script.
RETURNS_NONE = frozenset(
    """add add_all append clear close commit create_all delete dispose drop_all expire
    expire_all expunge expunge_all extend flush insert invalidate print refresh remove
    rollback setattr sort update""".split()
)
_DOCTEST_DIRECTIVE = re.compile(r"[ \t]*#[ \t]*doctest:[^\n]*$", re.M)


def _offset(lines: Sequence[bytes], line: int, col: int) -> int:
    """The character offset in the decoded text of (1-based line, UTF-8 byte column)."""
    before = b"".join(lines[: line - 1]) + lines[line - 1][:col]
    return len(before.decode("utf-8"))


def _echoed(node: ast.expr) -> bool:
    """Whether the prompt shows this expression statement's value (a guess for calls)."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        return name not in RETURNS_NONE
    return True


def _show_expressions(source: str, helper: str) -> str:
    """Wrap each expression statement the interactive prompt would echo in ``helper(...)``.

    As in the REPL, that is every expression statement outside function and class bodies.
    """
    tree = ast.parse(source)
    found: list[ast.Expr] = []

    def visit(body: Iterable[ast.AST]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Expr) and _echoed(node.value):
                found.append(node)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    visit(child.body)

    visit(tree.body)
    lines = source.encode("utf-8").splitlines(keepends=True)
    for node in sorted(found, key=lambda n: (n.lineno, n.col_offset), reverse=True):
        value = node.value
        assert value.end_lineno is not None and value.end_col_offset is not None
        start = _offset(lines, value.lineno, value.col_offset)
        end = _offset(lines, value.end_lineno, value.end_col_offset)
        inner = source[start:end]
        if isinstance(value, ast.Tuple) and not (inner.startswith("(") and inner.endswith(")")):
            inner = f"({inner})"  # `a, b` echoes as one tuple
        source = f"{source[:start]}{helper}({inner}){source[end:]}"
    return source


def _exception_name(exc_msg: str) -> str | None:
    """The dotted class name an expected exception starts with, if it is one the script can name."""
    match = re.match(r"([A-Za-z_][\w.]*)(?::|$)", exc_msg.strip())
    return match.group(1) if match else None


def _comment(text: str, prefix: str = "# ") -> list[str]:
    return [(prefix + line).rstrip() for line in text.rstrip("\n").split("\n")]


def _defines(source: str) -> bool:
    """Whether a block starts or ends with a top-level class or function definition."""
    lines = [line for line in source.split("\n") if line.strip()]
    tops = [line for line in lines if not line[:1].isspace()]
    return bool(tops) and (
        tops[0].startswith(("class ", "def ", "@", "async def "))
        or tops[-1].startswith(("class ", "def ", "async def "))
    )


def _identifiers(examples: Iterable[Example]) -> set[str]:
    names = set()
    for example in examples:
        names.update(re.findall(r"[A-Za-z_]\w*", example.source))
    return names


def _head(imports: set[str], uses_helper: bool, helper: str, title: str, where: str) -> list[str]:
    """The script's opening comment, its imports and the helper that shows values."""
    head = [
        f"# {title}",
        "#",
        f"# Every example of {where},",
        "# in page order, as one script.",
        f"# The cookbook's tests run them on SQLite with SQLAlchemy {SQLALCHEMY_VERSION}.",
        "# Lines starting with `#>` are the output the page shows;",
        "# here, SQL logged by echo=True has a timestamp in front.",
    ]
    if imports:
        head.append("")
        head.extend(f"import {module}" for module in sorted(imports, key=lambda m: (m != "traceback", m)))
    if uses_helper:
        head.extend(
            [
                "",
                "",
                f"def {helper}(value: object) -> None:",
                '    """Print a value as Python\'s interactive prompt does: its repr, and nothing for None."""',
                "    if value is not None:",
                "        print(repr(value))",
                "",
            ]
        )
    return head


def _imported_names(code: str) -> set[str]:
    """The names import statements bind in ``code`` (top-level await allowed), outside functions and classes."""
    tree = compile(code, "<script>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def render_script(
    examples: Sequence[Example],
    *,
    title: str,
    where: str,
    sections: dict[int, str] | None = None,
    api: str = "session",
) -> str:
    """The script of a page: its SQLite examples in order, output as ``#>`` comments.

    ``sections`` maps a block's opening line to the heading it sits under, shown as a comment;
    ``api`` picks the page's Session tabs (``"session"``) or its AsyncSession tabs (``"async"``).
    """
    sections = sections or {}
    taken = _identifiers(examples)
    helper = next(name for name in ("show", "show_value", "show_result_") if name not in taken)

    body: list[str] = []
    imports: set[str] = set()
    uses_helper = False
    left_out: list[str] = []
    section: str | None = title  # blocks under the page's title need no heading
    previous_block = -1
    previous_source = ""

    def flush_left_out() -> None:
        if left_out:
            tabs = list(dict.fromkeys(left_out))
            which = f"{tabs[0]} tab is" if len(tabs) == 1 else f"{', '.join(tabs[:-1])} and {tabs[-1]} tabs are"
            body.extend(
                [
                    "",
                    f"# (The page's {which} left out here: this script runs on SQLite and SQLAlchemy {SCRIPT_SERIES}"
                    + (f", with {API_LABELS[api]}.)" if set(tabs) & set(API_LABELS.values()) else ".)"),
                ]
            )
            left_out.clear()

    for example in examples:
        if example.backend not in (None, SCRIPT_BACKEND):
            left_out.append(BACKEND_LABELS.get(example.backend or "", example.backend or ""))
            continue
        if example.series not in (None, SCRIPT_SERIES):
            left_out.append(f"SQLAlchemy {example.series}")
            continue
        if example.api not in (None, api):
            left_out.append(API_LABELS[example.api or ""])
            continue
        flush_left_out()
        source = _DOCTEST_DIRECTIVE.sub("", example.source).strip("\n")
        if example.block != previous_block:
            # Two blank lines around top-level definitions and before a heading, as in any module.
            heading = sections.get(example.block_line) if example.visible else None
            wide = _defines(source) or _defines(previous_source)
            if heading and heading != section:
                section = heading
                body.extend(["", "", f"# {'-' * 4} {heading} {'-' * max(4, 80 - len(heading) - 8)}", ""])
            else:
                body.extend(["", ""] if wide else [""])
            if not example.visible:
                body.append("# A check the page runs without showing it:")
            previous_block, previous_source = example.block, source
        elif "\n" in source or (body and body[-1].startswith(("#>", "    "))):
            body.append("")
        if example.skip is not None:
            body.append(f"# The tests skip this example ({example.skip}):")
            body.extend(_comment(source))
            continue
        if example.kind == "code":
            body.append(source)
            continue
        if example.exc_msg is not None:
            name = _exception_name(example.exc_msg) or "Exception"
            if "." in name:
                imports.add(name.rpartition(".")[0])
            body.append("try:")
            body.extend(f"    {line}" if line else "" for line in source.split("\n"))
            body.append(f"except {name}:")
            body.append("    traceback.print_exc()  # the error the page shows; the script goes on")
            imports.add("traceback")
        elif example.want:
            shown = _show_expressions(source, helper)
            uses_helper = uses_helper or shown != source
            body.append(shown)
        else:
            body.append(source)
        if example.want:
            body.extend(_comment(example.want.replace("<BLANKLINE>", ""), "#> "))
    flush_left_out()

    if any(example.awaits for example in examples if example.runs_on(SCRIPT_BACKEND, SCRIPT_SERIES, api)):
        # As typed into `python -m asyncio`: in a script, the page runs inside one coroutine.
        imports.add("asyncio")
        head = _head(imports, uses_helper, helper, title, where)
        code = "\n".join(body).strip("\n")
        # At the prompt every name is global; in main() a name the page imports would be local to
        # main() all through it, and the script's own use of that module before the import would fail.
        shared = sorted(_imported_names(code) & {module.split(".")[0] for module in imports | {"asyncio"}})
        if shared:
            code = f"global {', '.join(shared)}  # the page imports these too\n{code}"
        body = ["", "", "async def main() -> None:", textwrap.indent(code, "    "), "", "", "asyncio.run(main())"]
    else:
        head = _head(imports, uses_helper, helper, title, where)
    script = "\n".join(head + body).rstrip("\n") + "\n"
    return re.sub(r"\n{4,}", "\n\n\n", script)


# --- Checking what a script printed --------------------------------------------------------

#: What ``echo=True`` puts before each logged message outside the harness.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO sqlalchemy\.engine\.Engine ", re.M)
#: Stands for output the page does not show (what a plain code block prints, say).
_ANYTHING = "..."


def _expected(examples: Sequence[Example], backend: str, api: str) -> tuple[list[tuple[Example, str]], bool]:
    """Each checked example, with what the script must have printed up to and including it.

    One expected output follows another, in page order; where a plain code block or an example
    that raises may print something the page does not show, ``...`` stands for it (the tests do
    not check that output either).  The flag says whether unchecked output may follow the last.
    """
    expected: list[tuple[Example, str]] = []
    text = ""
    unchecked = False
    for example in examples:
        if not example.runs_on(backend, SCRIPT_SERIES, api):
            continue
        if example.kind == "code" or example.exc_msg is not None:
            unchecked = True
        if not example.want:
            continue
        if unchecked and not text.endswith(_ANYTHING):
            text += _ANYTHING
        text += example.want
        expected.append((example, text))
        unchecked = False
    return expected, unchecked


def output_problem(
    examples: Sequence[Example], output: str, backend: str = SCRIPT_BACKEND, api: str = "session"
) -> str | None:
    """None if ``output`` (a run of the page's script for ``api``) shows what the page shows; else what differs.

    The expected outputs, in page order, are compared with what the script printed by Sybil's
    doctest comparison (:func:`cookbook_site.page.output_matches`: ``...`` matches anything,
    trailing whitespace does not count), after the log's timestamps are dropped.
    """
    got = _LOG_PREFIX.sub("", output)
    expected, open_end = _expected(examples, backend, api)
    whole = expected[-1][1] if expected else ""
    if output_matches(whole + _ANYTHING if open_end else whole, got):
        return None
    for example, upto in expected:
        if not output_matches(upto + _ANYTHING, got):
            return f"line {example.line}: the page shows\n{example.want}\nbut the script printed:\n{got[-3000:]}"
    return f"the script printed more than the page shows, after its last output:\n{got[-1500:]}"


# --- The Sphinx side --------------------------------------------------------------------------


class recipe_download(nodes.General, nodes.Element):  # noqa: N801 (docutils node naming)
    """Where the "Download this recipe" line goes; rendered by HTML builders only."""


def visit_recipe_download_html(self: HTML5Translator, node: recipe_download) -> None:
    page = self.builder.get_target_uri(self.builder.current_docname)
    links: list[str] = []
    for _api, target in node["targets"]:
        uri = relative_uri(page, target)
        name = target.rpartition("/")[2]
        text = "Download this recipe" if not links else "with AsyncSession"
        links.append(
            f'<a class="reference download" href="{self.attval(uri)}" download="{self.attval(name)}">{text}</a>'
            + (f" (<code>{self.encode(name)}</code>)" if len(node["targets"]) > 1 else "")
        )
    if len(links) == 1:
        name = node["targets"][0][1].rpartition("/")[2]
        said = f"{links[0]} as a Python script (<code>{self.encode(name)}</code>)"
    else:
        said = f"{links[0]} as a Python script with Session, or {links[1]}"
    self.body.append(
        f'<p class="recipe-download">{said}: every example on this page, in order, ready to run on SQLite.</p>\n'
    )
    raise nodes.SkipNode


def _sections(doctree: nodes.document) -> dict[int, str]:
    """Each literal block's first line, mapped to the title of the section it is in."""
    found = {}
    for block in doctree.findall(nodes.literal_block):
        parent = block.parent
        while parent is not None and not isinstance(parent, nodes.section):
            parent = parent.parent
        if parent is not None and block.line is not None and parent.children:
            found[block.line] = parent[0].astext()
    return found


def on_doctree_read(app: Sphinx, doctree: nodes.document) -> None:
    env = app.env
    docname = env.docname
    if not page_model.is_recipe(docname):
        return
    try:
        examples = list(page_model.read(env.doc2path(docname)).examples)
    except PageError as exc:
        logger.warning("recipe script: %s", exc, location=docname, type="recipe_script")
        return
    if not examples:
        return
    section = doctree.next_node(nodes.section)
    title = section[0].astext() if section is not None and section.children else docname
    baseurl: str = app.config.html_baseurl
    page = f"{baseurl.rstrip('/')}/{app.builder.get_target_uri(docname)}" if baseurl else docname
    where = f"the SQLAlchemy ORM Cookbook page {page}"
    # A page with Session and AsyncSession tabs gets a script for each; any other page, one.
    apis = [api for api in apis_of(page_model.read(env.doc2path(docname))) if api in STORES]
    if len(apis) == 1:
        apis = ["session"]
    targets = []
    for api in apis:
        script = render_script(examples, title=title, where=where, sections=_sections(doctree), api=api)
        target = f"{OUTPUT_FOLDER}/{docname}{SUFFIXES[api]}.py"
        try:
            compile(script, target, "exec")
        except SyntaxError as exc:
            logger.warning(
                "recipe script: the script assembled from this page does not compile: %s (script line %s)",
                exc.msg,
                exc.lineno,
                location=docname,
                type="recipe_script",
            )
            return
        STORES[api].of(env)[docname] = script
        targets.append((api, target))
    # Under the short answer: the title's section, then its first paragraph.
    if section is not None:
        paragraph = next((child for child in section.children if isinstance(child, nodes.paragraph)), None)
        link = recipe_download(targets=targets)
        if paragraph is not None:
            paragraph.parent.insert(paragraph.parent.index(paragraph) + 1, link)
        else:
            section.insert(1, link)


def on_build_finished(app: Sphinx, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    root = Path(app.outdir) / OUTPUT_FOLDER
    for api, store in STORES.items():
        for docname, script in store.of(app.env).items():
            if docname not in app.env.all_docs:
                continue
            path = root / f"{docname}{SUFFIXES[api]}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text(encoding="utf-8") != script:
                path.write_text(script, encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    # The pages it reads are MyST with sphinx-design tabs.
    app.setup_extension("myst_parser")
    app.setup_extension("sphinx_design")
    add_html_only_node(app, recipe_download, visit_recipe_download_html)
    app.connect("doctree-read", on_doctree_read)
    for store in STORES.values():
        store.connect(app)
    app.connect("build-finished", on_build_finished)
    return {"version": "2", "env_version": 3, "parallel_read_safe": True, "parallel_write_safe": True}
