"""The GitHub Action: inputs → :class:`~odooops_action.action.settings.ActionSettings` → a mode → the store.

Modules are imported by :mod:`odooops_action.action.main` only when a mode needs them, so that
this package's ``__init__`` stays empty on purpose.
"""
