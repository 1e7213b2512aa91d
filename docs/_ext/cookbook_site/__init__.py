"""The SQLAlchemy ORM Cookbook site's own machinery: not the recipe library, and not installed with it.

- :mod:`cookbook_site.page`: the one model of a page (which pages are recipes, their examples
  in order, the tab each belongs to, what each expects); the tests, downloads, Run and the
  bench read pages through it.
- Sphinx extensions, each named in ``conf.py``: :mod:`~cookbook_site.verified` (the versions the
  examples were verified with), :mod:`~cookbook_site.downloads` ("Download this recipe"),
  :mod:`~cookbook_site.run` (Run in the browser), :mod:`~cookbook_site.errors` (the Errors
  page, made from every exception the pages show), :mod:`~cookbook_site.meta` (each page's
  description, and llms.txt), :mod:`~cookbook_site.plain_tokens` and :mod:`~cookbook_site.trim_css`
  (lighter pages) and :mod:`~cookbook_site.a11y` (keyboard and screen-reader fixes to the HTML
  Sphinx writes).
- :mod:`cookbook_site.pyodide_assets`: ``make pyodide``, which fetches what Run needs.

``requirements.txt`` installs it (editable) from ``docs/_ext``.
"""
