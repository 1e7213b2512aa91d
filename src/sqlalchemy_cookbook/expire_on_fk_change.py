"""Placeholder: the ExpireRelationshipOnFKChange recipe is being written (issue 6)."""


class ExpireRelationshipOnFKChange:
    """Not implemented yet."""
