#!/usr/local/bin/python
"""The container Action's post step (action.yml ``post-entrypoint``): the fallback cancellation."""

import sys

from odooops_action.action.main import main

if __name__ == "__main__":
    sys.exit(main(stage="post"))
