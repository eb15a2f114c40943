"""``python -m odooops_action.worker ...``: the same as ``odooops worker ...``."""

from __future__ import annotations

import sys

from odooops_action.worker.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
