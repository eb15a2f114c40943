"""The entry points' interpreter ignores the job's ``PYTHON*`` variables and the user site.

actions/runner passes the job's whole ``env`` context into the container (``-e NAME`` for each
variable of the workflow, job and step ``env:`` and of ``GITHUB_ENV``), so a workflow's
``PYTHONPATH: ${{ github.workspace }}/src`` (with an ``httpx/`` of its own there), ``PYTHONHOME``,
``PYTHONSTARTUP``, ``PYTHONWARNINGS=error`` or ``PYTHONINSPECT`` would otherwise reach our Python.
The entry points run as ``python -E -s -u`` (``-E``: no ``PYTHON*`` variable; ``-s``: no user
site-packages; ``-u``: unbuffered, because ``-E`` also drops ``PYTHONUNBUFFERED``). In the image
the flags are on the scripts' ``#!`` line, so they hold from the first instruction; started any
other way (``python entrypoint.py``), the script re-executes itself with them, keeping its pid.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping, Sequence

INTERPRETER_FLAGS = ("-E", "-s", "-u")


def isolated() -> bool:
    return bool(sys.flags.ignore_environment and sys.flags.no_user_site)


def ensure_isolated(orig_argv: Sequence[str] | None = None) -> None:
    """Re-execute this interpreter's command line with ``-E -s -u`` added, unless it already runs so.

    The original options (``-X importtime``, ``-c ...``) are kept: ``sys.orig_argv``.
    """
    if not isolated():
        argv = list(sys.orig_argv if orig_argv is None else orig_argv)
        os.execv(sys.executable, [sys.executable, *INTERPRETER_FLAGS, *argv[1:]])  # noqa: S606


# Certificate locations that HTTP clients read from the environment by themselves (OpenSSL and
# httpx: SSL_CERT_FILE/SSL_CERT_DIR; requests, for the check run: REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE).
CA_PATH_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def drop_missing_ca_paths(environ: MutableMapping[str, str]) -> list[str]:
    """Remove CA-bundle variables whose path does not exist here; return warnings naming them.

    The job's env context often points these at files of the runner host (``/etc/ssl/...`` of a
    self-hosted machine, a setup action's cache), which the container does not have: httpx would
    fail to build a client at all (FileNotFoundError), even for an http:// URL. A path that does
    exist in the container (e.g. a CA bundle in the workspace, under /github/workspace) is kept.
    """
    warnings = []
    for variable in CA_PATH_VARIABLES:
        value = environ.get(variable)
        if value is None or os.path.exists(value):
            continue
        del environ[variable]
        warnings.append(
            f"{variable}={value} does not exist in the Action's container (a path on the runner host?): "
            "ignored, the image's CA certificates are used. Put the bundle in the workspace to use it."
        )
    return warnings
