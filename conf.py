"""Sphinx configuration for the SQLAlchemy ORM Cookbook.

The pages live in docs/ and are built with ``sphinx-build -c . docs OUTDIR``, so the site's
root page is docs/index.md and nothing outside docs/ (README, CHANGELOG, .venv) is read as a page.
Read the Docs runs the same command (see .readthedocs.yaml).
"""

import os
from importlib.metadata import version as _package_version
from urllib.parse import urlsplit

project = "SQLAlchemy ORM Cookbook"
author = "The SQLAlchemy ORM Cookbook authors"
copyright = "2026, " + author
release = _package_version("sqlalchemy-cookbook")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx_design",
    "sphinx_copybutton",
    "notfound.extension",
    # Open Graph tags and llms-full.txt (settings below).
    "sphinxext.opengraph",
    "sphinx_llms_txt",
    # The site's own extensions (docs/_ext/cookbook_site, installed by requirements.txt).
    "cookbook_site.verified",
    "cookbook_site.downloads",
    "cookbook_site.plain_tokens",
    "cookbook_site.trim_css",
    "cookbook_site.run",
    # {error-index}: the Errors page, every exception the recipe pages show, made from their examples.
    "cookbook_site.errors",
    # Keyboard and screen-reader fixes to the HTML Sphinx writes: toctree captions get their
    # aria-level, code blocks that scroll can take the focus (see the module).
    "cookbook_site.a11y",
    # Each page's short answer as its meta description and og:description, llms.txt, and sitemap.xml.
    "cookbook_site.meta",
]

# Warnings are errors (`-W -n`); nothing is ignored.
nitpicky = True
exclude_patterns = ["_build", "**/_*", "conftest.py"]
source_suffix = {".md": "markdown"}
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Pinned copies of the inventories keep the build offline and still checked;
# `make inventories` refreshes them. Links point at the live documentation.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", "_inventories/python.inv"),
    "sqlalchemy": ("https://docs.sqlalchemy.org/en/21/", "_inventories/sqlalchemy.inv"),
    # A name both series document resolves to the inventory whose key sorts last (Sphinx sorts
    # them by key), so 2.0's key sorts before "sqlalchemy" and a plain role links to 2.1; a
    # SQLAlchemy 2.0 tab links into 2.0 with {external+sqla20:py:meth}`sqlalchemy.orm.Session.get`.
    "sqla20": ("https://docs.sqlalchemy.org/en/20/", "_inventories/sqlalchemy20.inv"),
}
intersphinx_timeout = 5

autodoc_typehints = "description"
autodoc_member_order = "bysource"

html_theme = "furo"
html_title = "SQLAlchemy ORM Cookbook"
html_static_path = ["docs/_static"]
html_css_files = ["cookbook.css"]
# Declared, so browsers do not ask the server for a /favicon.ico it does not have.
html_favicon = "docs/_static/favicon.svg"

# Rank pages by how many of the query's words their title holds (see the file).
html_search_scorer = "docs/_static/search-scorer.js"

# cookbook_site.run: where `make pyodide` puts what Run needs, and the recipe library it ships
# to the browser (both relative to this file).
cookbook_runner_assets = "docs/_pyodide/dist"
cookbook_library = "src/sqlalchemy_cookbook"

# cookbook_site.trim_css: stylesheets whose classes are all written into the HTML, trimmed to
# the rules some page can use.
trimmed_stylesheets = ["sphinx-design.min.css", "pygments.css"]

# The site's address, for the canonical link, og:url, sitemap.xml and llms.txt: Read the Docs
# gives each build its canonical URL (with its language and version, ending in "/"); a local
# build uses the address `make serve` serves it on.
html_baseurl = os.environ.get("READTHEDOCS_CANONICAL_URL") or "http://127.0.0.1:8000/"

# sphinxext-opengraph: page URLs from the same address, and no generated card images (they need
# matplotlib). cookbook_site.meta gives each page its description (og:description too), cut to
# whole sentences within this many characters.
ogp_site_url = html_baseurl
ogp_social_cards = {"enable": False}
ogp_description_length = 200

# sphinx-llms-txt: llms-full.txt only, every page's Markdown source in toctree order (the
# changelog page is an include the extension cannot follow); cookbook_site.meta writes llms.txt.
llms_txt_file = False
llms_txt_exclude = ["about/changelog"]

# A copied example is runnable code: doctest prompts and output are left behind.
copybutton_prompt_text = r">>> |\.\.\. "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True

# The 404 page's links start at the site's root: the path of html_baseurl, which on Read the Docs
# holds the language/version prefix ("/en/latest/"), and everywhere else is "/".
notfound_urls_prefix = urlsplit(html_baseurl).path
# The 404 page offers a search for the words of the missing address: a plain form to the search
# page, which docs/_static/notfound-search.js fills in ("transactions/pending-rolback.html" ->
# "pending rolback"); without JavaScript the box is empty and the form still works.
notfound_context = {
    "title": "Page not found",
    "body": f"""<h1>Page not found</h1>
<p>There is no page at this address. Search the cookbook for its words:</p>
<form class="notfound-search" action="{notfound_urls_prefix}search.html" method="get" role="search">
<input type="search" name="q" aria-label="Search the cookbook" size="30">
<button type="submit">Search</button>
</form>
<script src="{notfound_urls_prefix}_static/notfound-search.js"></script>
""",
}
