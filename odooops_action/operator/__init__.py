"""The operator's commands: ``odooops list | status | logs | retry | workers | doctor | selftest``.

They read and act on the queue through ``ops.*`` functions only (one per operation, see
:mod:`odooops_action.operator.calls`), over REST and over PostgreSQL alike; the CLI only registers
them (:func:`odooops_action.operator.commands.register`).
"""
