"""Placeholder: the PreFilteredQuery recipe is being written (issue 6)."""


class PreFilteredQuery:
    """Not implemented yet."""
