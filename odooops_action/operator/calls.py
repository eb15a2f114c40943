"""How the operator commands call their ``ops.*`` functions.

The operations themselves are rows of the one operations table
(:data:`odooops_action.store.operations.OPERATIONS`, model ``json``), executed by either transport
with the same retries and the same error map as every other operation; their answers are parsed
into :mod:`odooops_action.operator.views` by the commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from odooops_action.store.base import RunStore

# The oldest schema (newest migration file, by its version prefix) this client's operations need.
# Bump it when the client starts calling a function a newer migration adds.
SCHEMA_VERSION = "20261202020000"


def call(store: RunStore, function: str, arguments: Mapping[str, Any]) -> Any:
    """``ops.<function>(**arguments)`` through ``store``; the decoded JSON answer."""
    return store.call_operation(function, arguments)
