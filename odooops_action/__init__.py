"""odooops-action: drive the OdooOps run queue (the ``ops`` schema) from GitHub Actions and workers."""

__version__ = "0.1.0"
