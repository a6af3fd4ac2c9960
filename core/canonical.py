"""One spelling of a value for hashing: canonical JSON, shared by the audit seals and the backup manifest.

Two reads of the same rows must hash alike whichever process, driver or time zone read them:
keys sorted, no spaces, ASCII only, an instant written in UTC to the microsecond.
"""

import datetime
import json
from decimal import Decimal
from uuid import UUID


def plain(value):
    """What json cannot write by itself, as text (``json.dumps(default=plain)``)."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat(timespec="microseconds") if value.tzinfo else value.isoformat()
    if isinstance(value, datetime.date | datetime.time | Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=plain)
