"""Store interface: the operations on the run queue, over Supabase REST or a direct PostgreSQL link."""

from odooops_action.store.base import RunStore

__all__ = ["RunStore"]
