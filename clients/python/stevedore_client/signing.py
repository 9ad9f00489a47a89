"""Signed envelopes, as the Rust side writes and checks them (docs/protocol.md, section 7).

`["sig1", KEY_ID, MAC, PAYLOAD]` in MessagePack; MAC is HMAC-SHA256 with the key's secret over
KEY_ID, a NUL byte, the purpose label (empty for a task message) and PAYLOAD. The first key
signs; the key spec is the one of `STEVEDORE_SIGNING_KEYS`: `ID:SECRET[,ID:SECRET...]`.
"""

import hashlib
import hmac
import os
from typing import List, Optional, Sequence, Tuple, Union

import msgpack

from .errors import InvalidOptions

TAG = "sig1"
MIN_SECRET_LEN = 16

KeySpec = Union[str, Sequence[Tuple[str, Union[str, bytes]]]]


class SigningKeys:
    """The keys of a producer: the first signs."""

    def __init__(self, keys: List[Tuple[str, bytes]]):
        if not keys:
            raise InvalidOptions("STEVEDORE_SIGNING_KEYS: no signing key given")
        for key_id, secret in keys:
            if not key_id or len(secret) < MIN_SECRET_LEN:
                raise InvalidOptions(
                    "STEVEDORE_SIGNING_KEYS: a signing key needs a non-empty ID and a secret "
                    "of at least 16 characters"
                )
        self._keys = keys

    def __repr__(self) -> str:
        return f"SigningKeys({[key_id for key_id, _ in self._keys]}, secrets hidden)"

    @classmethod
    def parse(cls, spec: KeySpec) -> "SigningKeys":
        """Keys from `ID:SECRET[,ID:SECRET...]` (commas or new lines) or (id, secret) pairs."""
        if not isinstance(spec, str):
            return cls([(i, s.encode() if isinstance(s, str) else bytes(s)) for i, s in spec])
        keys = []
        for part in spec.replace("\n", ",").split(","):
            part = part.strip()
            if not part:
                continue
            if ":" not in part:
                raise InvalidOptions(
                    "STEVEDORE_SIGNING_KEYS: each signing key is ID:SECRET "
                    "(the ID names it for rotation)"
                )
            key_id, secret = part.split(":", 1)
            keys.append((key_id, secret.encode()))
        return cls(keys)

    @classmethod
    def from_env(cls) -> Optional["SigningKeys"]:
        """The keys of `STEVEDORE_SIGNING_KEYS` or the file `STEVEDORE_SIGNING_KEYS_FILE`."""
        spec = os.environ.get("STEVEDORE_SIGNING_KEYS")
        if spec:
            return cls.parse(spec)
        path = os.environ.get("STEVEDORE_SIGNING_KEYS_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as file:
                    return cls.parse(file.read())
            except OSError as error:
                raise InvalidOptions(f"cannot read signing keys file {path}: {error}") from None
        return None

    def sign(self, payload: bytes, label: bytes = b"") -> bytes:
        """`payload` in an envelope signed by the first key for the purpose `label`."""
        key_id, secret = self._keys[0]
        return msgpack.packb([TAG, key_id, mac(secret, key_id, label, payload), payload],
                             use_bin_type=True)


def mac(secret: bytes, key_id: str, label: bytes, payload: bytes) -> bytes:
    """The MAC over the key id, a NUL, the purpose label and the payload."""
    digest = hmac.new(secret, key_id.encode() + b"\0" + label, hashlib.sha256)
    digest.update(payload)
    return digest.digest()


def unwrap(payload: bytes) -> bytes:
    """The message inside a signed envelope, unchecked (for reading); other bytes as they are."""
    if payload[:1] != b"\x94":
        return payload
    parts = msgpack.unpackb(payload, raw=False)
    return parts[3]
