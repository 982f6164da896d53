"""Refused peers, said at WARNING but rate-limited: a flood of refusals must not flood the journal.

governor.toml promises that a client without an authorised key is "refused and logged"; pyzmq's
authenticator logs its verdicts at DEBUG only, so :class:`RefusingAuthenticator` adds one WARNING
per refusal (address and public key) through a :class:`RefusalLog`, which also carries the
connection guard's refusals (too many connections, failed handshakes, a sender cut for memory).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

__all__ = ["RefusalLog", "RefusingAuthenticator"]


class RefusalLog:
    """WARNING lines, at most ``burst`` per ``window_s`` seconds for each kind of refusal (so a flood of
    one kind cannot hide another); the ones held back are counted and the next line of that kind that
    goes out says how many. Safe to call from several threads."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst, self.window_s, self._clock = burst, window_s, clock
        self._lock = threading.Lock()
        self._kinds: dict[str, list[float]] = {}  # kind -> [window start, lines sent in it, lines held back]
        self.total = 0  # refusals seen, logged or not

    def warn(self, kind: str, fmt: str, *args: Any) -> bool:
        """Log one refusal of ``kind`` unless this window's lines for it are spent; True when it was logged."""
        with self._lock:
            self.total += 1
            now = self._clock()
            state = self._kinds.setdefault(kind, [now, 0, 0])
            if now - state[0] >= self.window_s:
                state[0], state[1] = now, 0
            if state[1] >= self.burst:
                state[2] += 1
                return False
            state[1] += 1
            held, state[2] = int(state[2]), 0
        suffix = f" ({held} more like it not logged before this one)" if held else ""
        self.logger.warning(fmt + "%s", *args, suffix)
        return True


class RefusingAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, plus a rate-limited WARNING for every client it refuses."""

    def __init__(self, context: Any, refusals: RefusalLog) -> None:
        super().__init__(context, log=refusals.logger)
        self.refusals = refusals
        self._asking = ("?", "?", "")  # address, mechanism, public key of the request being decided

    def handle_zap_message(self, msg: list[bytes]) -> Any:
        # Frames (ZAP 1.0): version, request id, domain, address, identity, mechanism, credentials...
        address = msg[3].decode(errors="replace") if len(msg) > 3 else "?"
        mechanism = msg[5].decode(errors="replace") if len(msg) > 5 else "?"
        key = z85.encode(msg[6]).decode() if mechanism == "CURVE" and len(msg) > 6 and len(msg[6]) == 32 else ""
        self._asking = (address, mechanism, key)
        return super().handle_zap_message(msg)  # a coroutine in pyzmq >= 25, which the thread awaits

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes, *args: Any,
                        **kwargs: Any) -> None:
        if status_code != b"200":
            address, mechanism, key = self._asking
            self.refusals.warn("key", "refused a %s client from %s: %s%s; to let it in, add its public key to "
                               "[access] curve_authorized_dir and restart the daemon", mechanism, address,
                               status_text.decode(errors="replace"), f" (public key {key})" if key else "")
        super()._send_zap_reply(request_id, status_code, status_text, *args, **kwargs)
