"""Publish tasks to stevedore workers from Python (the wire protocol of docs/protocol.md)."""

from .client import Client, TaskHandle
from .errors import (InvalidName, InvalidOptions, PartlyPublished, PayloadTooLarge,
                     RedisUnreachable, StevedoreError, TaskFailed, WaitTimeout)
from .message import dedup_key
from .signing import SigningKeys

__all__ = ["Client", "TaskHandle", "SigningKeys", "dedup_key", "StevedoreError", "InvalidName",
           "InvalidOptions", "PartlyPublished", "PayloadTooLarge", "RedisUnreachable",
           "TaskFailed", "WaitTimeout"]
