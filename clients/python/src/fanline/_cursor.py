"""Per-partition resume cursors built from received event ids (``topic/partition/offset``)."""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

Partition = Tuple[str, int]


def parse_event_id(event_id: object) -> Optional[Tuple[str, int, int]]:
    """``"topic/partition/offset"`` -> (topic, partition, offset); None when malformed.
    Kafka topic names cannot contain ``/``, so the last two fields are split off the right."""
    if not isinstance(event_id, str):
        return None
    parts = event_id.rsplit("/", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    topic, p, o = parts
    if not (p.isdigit() and _is_int(o)):
        return None
    offset = int(o)
    if offset < 0:
        return None
    return topic, int(p), offset


def _is_int(s: str) -> bool:
    return s.isdigit() or (s.startswith("-") and s[1:].isdigit())


def parse_since(since: Mapping[str, object]) -> Dict[Partition, int]:
    """A ``since`` mapping as the protocol writes it (``{"topic/0": 120}``) -> cursor entries.
    Raises ValueError on a malformed key or offset (this is application input, not server input)."""
    out: Dict[Partition, int] = {}
    for k, v in since.items():
        if k == "epoch":
            continue
        topic, sep, p = k.rpartition("/")
        if not sep or not topic or not p.isdigit():
            raise ValueError(f"since key {k!r} must be 'topic/partition'")
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"since[{k!r}] must be an integer offset")
        out[(topic, int(p))] = v
    return out


class Cursor:
    """The last offset received per (topic, partition) of one channel, and the epoch of the log
    those offsets belong to (from ``welcome.epoch``; None while the server sends none)."""

    def __init__(self, since: Optional[Mapping[str, object]] = None, epoch: Optional[str] = None):
        self.offsets: Dict[Partition, int] = parse_since(since) if since else {}
        if epoch is None and since and isinstance(since.get("epoch"), str):
            epoch = since["epoch"]  # type: ignore[assignment]
        self.epoch: Optional[str] = epoch

    def advance(self, topic: str, partition: int, offset: int) -> bool:
        """Records a received offset; False when it is not past the cursor (a duplicate or an
        out-of-order replay), which the client then does not deliver."""
        key = (topic, partition)
        last = self.offsets.get(key)
        if last is not None and offset <= last:
            return False
        self.offsets[key] = offset
        return True

    def reset(self, epoch: Optional[str]) -> None:
        """After ``recovered:false``: the old positions are void; start over in ``epoch``."""
        self.offsets.clear()
        self.epoch = epoch

    def since(self) -> Optional[Dict[str, object]]:
        """The ``since`` object for a resubscribe, or None when nothing was received yet.
        ``epoch`` is included only when known (a server without epochs rejects the key)."""
        if not self.offsets:
            return None
        out: Dict[str, object] = {
            f"{t}/{p}": o for (t, p), o in sorted(self.offsets.items())
        }
        if self.epoch is not None:
            out["epoch"] = self.epoch
        return out

    def snapshot(self) -> Dict[str, object]:
        """What to persist to resume after a process restart (``subscribe(..., since=...)``)."""
        return self.since() or {}
