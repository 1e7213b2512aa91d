"""The trimmed sphinx-design stylesheet keeps what the site's pages use, and only that."""

from sqlalchemy_cookbook._design_css import trim

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
