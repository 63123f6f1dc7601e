"""Errors that are the user's to fix: reported as one line, never as a traceback."""


class UserError(Exception):
    """Bad input (a parameter, a file, an env id). The message is one line that names the problem
    and what is allowed; entry points print it to stderr and exit with status 2."""
