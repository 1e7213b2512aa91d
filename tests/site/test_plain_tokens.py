"""Highlighting spans that colour a token as plain text are left out of the pages."""

from cookbook_site.plain_tokens import plain_classes, unwrap

# As furo writes it: light rules, then the dark theme's, chosen by attribute or by the system setting.
CSS = """
.highlight { background: #f2f2f2; color: #1E1E1E }
.highlight .n { color: #1E1E1E }
.highlight .o { color: #163 }
.highlight .w { color: #1E1E1E }
.highlight .p { color: #1E1E1E }
@media not print {
body[data-theme="dark"] .highlight { background: #202020; color: #D0D0D0 }
body[data-theme="dark"] .highlight .n { color: #D0D0D0 }
body[data-theme="dark"] .highlight .w { color: #666 }
body[data-theme="dark"] .highlight .p { color: #D0D0D0; font-weight: bold }
}
"""


def test_a_class_is_plain_only_if_every_theme_gives_it_the_blocks_own_colour() -> None:
    """`.o` has a colour of its own; `.w` is grey in dark; `.p` is bold in dark: only `.n` is plain."""
    assert {"n"} == plain_classes(CSS)


def test_only_plain_spans_with_text_alone_are_unwrapped() -> None:
    html = '<span class="n">user</span><span class="o">=</span><span class="n"><a href="#">x</a></span>'
    assert 'user<span class="o">=</span><span class="n"><a href="#">x</a></span>' == unwrap(html, {"n"})


def test_nothing_is_unwrapped_without_plain_classes() -> None:
    html = '<span class="n">user</span>'
    assert html == unwrap(html, set())
