"""A trimmed stylesheet keeps the rules the site's pages can use, and only those."""

from cookbook_site.trim_css import trim

CSS = (
    ":root{--sd-color-primary:#0071bc}"
    ".sd-tab-set{display:flex}"
    ".sd-card,.sd-tab-label{color:red}"
    ".sd-card .sd-tab-label{color:blue}"
    ".sd-tab-set>input:is(.sd-card,.sd-x){order:1}"
    "@media (min-width:576px){.sd-card{width:1px}.sd-tab-set{width:2px}}"
    "@media print{.sd-card{display:none}}"
    "@keyframes sd-slide{0%{opacity:0}to{opacity:1}}"
    "@keyframes sd-spin{0%{rotate:0}}"
    ".sd-tab-content{animation:sd-slide 1s}"
)


def test_keeps_the_rules_of_the_classes_in_use() -> None:
    assert (
        ":root{--sd-color-primary:#0071bc}"
        ".sd-tab-set{display:flex}"
        ".sd-tab-label{color:red}"
        "@media (min-width:576px){.sd-tab-set{width:2px}}"
        ".sd-tab-content{animation:sd-slide 1s}"
        "@keyframes sd-slide{0%{opacity:0}to{opacity:1}}"
    ) == trim(CSS, {"sd-tab-set", "sd-tab-label", "sd-tab-content"})


def test_keeps_every_rule_when_every_class_is_used() -> None:
    """All but the animation no rule uses."""
    used = {"sd-tab-set", "sd-tab-label", "sd-tab-content", "sd-card", "sd-x"}
    unused = "@keyframes sd-spin{0%{rotate:0}}"
    assert sorted(CSS.replace(unused, "")) == sorted(trim(CSS, used))


PYGMENTS = (
    ".highlight pre { line-height: 125%; }\n"
    ".highlight .k { color: #8045E5 } /* Keyword */\n"
    ".highlight .nt { color: #00749C } /* Name.Tag */\n"
    "@media not print {\n"
    'body[data-theme="dark"] .highlight .k { color: #6EBF26 } /* Keyword */\n'
    'body[data-theme="dark"] .highlight .nt { color: #6EBF26 } /* Name.Tag */\n'
    "}\n"
)


def test_comments_whitespace_and_attribute_values_are_no_obstacle() -> None:
    """A Pygments stylesheet as furo writes it: the unused token's rules go, light and dark."""
    assert (
        ".highlight pre{ line-height: 125%; }"
        ".highlight .k{ color: #8045E5 }"
        '@media not print{body[data-theme="dark"] .highlight .k{ color: #6EBF26 }}'
    ) == trim(PYGMENTS, {"highlight", "k"})
