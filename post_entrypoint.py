#!/usr/local/bin/python -Esu
"""The container Action's post step (action.yml ``post-entrypoint``): the fallback cancellation.

``-Esu`` (``-E -s -u``): the job's PYTHON* variables and user site never reach this interpreter
(see odooops_action.action.isolation).
"""

import sys

from odooops_action.action.isolation import ensure_isolated

if __name__ == "__main__":
    ensure_isolated()
    from odooops_action.action.main import main

    sys.exit(main(stage="post"))
