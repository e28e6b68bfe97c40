"""Errors a user can act on. Stage scripts print their message and exit non-zero, without a traceback."""


class BirdplaneError(Exception):
    """Base of all errors whose message names the problem and the fix."""
