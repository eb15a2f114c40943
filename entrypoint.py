#!/usr/local/bin/python
"""The container Action's entry point (the image's ENTRYPOINT): see odooops_action.action.main."""

import sys

from odooops_action.action.main import main

if __name__ == "__main__":
    sys.exit(main())
