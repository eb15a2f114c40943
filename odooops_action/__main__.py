"""``python -m odooops_action``: the ``odooops`` command."""

from odooops_action.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
