"""Placeholder: the UniqueObject recipe is being written (issue 6)."""


class UniqueObject:
    """Not implemented yet."""
