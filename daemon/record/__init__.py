"""The record: one SQLite database holding the listeners, the events, the memory and the decisions."""

from .schema import SCHEMA
from .store import Holding, Store

__all__ = ["SCHEMA", "Holding", "Store"]
