"""Train once across nodes without a shared file system: leases handed out by one named Ray actor.

A lease is the right to make one cache entry ("train/<hash>", "autoencoders/<key>", "recon/<key>"). The holder
renews it from a heartbeat thread; a holder that stops renewing (its worker was killed, its node lost) loses it
after `ttl_s`, and the next trial that asks takes it over. The same holder (one Tune trial id: a retried trial
is the same trial) is granted its own lease again at once. Expiry is judged on the actor's own clock, so clocks
of different nodes never matter.

One actor per cache location (`lease_actor`), detached so that it outlives the driver that created it (a driver
killed and resumed meets the same leases), with no CPU reserved. Losing the actor (its node died) loses only
leases: holders re-claim theirs on their next heartbeat, and the worst case is an entry made twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

from diad.hashing import json_hash

NAMESPACE = "diad-sweep"
TTL_S = 60.0  # a killed holder's lease is free this long after its last heartbeat
POLL_S = 1.0  # how often a waiter looks for the finished entry or a free lease
CALL_TIMEOUT_S = 120.0


class LeaseTable:
    """The leases themselves: {key: (holder, expiry)}; the body of the Ray actor (plain Python, so testable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}

    def acquire(self, key: str, holder: str, ttl_s: float) -> str | None:
        """Grant or renew `key` for `holder` (None), or name the live holder that has it."""
        now = self._clock()
        current = self._held.get(key)
        if current is not None and current[0] != holder and current[1] > now:
            return current[0]
        self._held[key] = (holder, now + ttl_s)
        return None

    def release(self, key: str, holder: str) -> bool:
        """Give `key` back; False when `holder` did not hold it (it expired and was taken over)."""
        if self._held.get(key, ("",))[0] != holder:
            return False
        del self._held[key]
        return True

    def held(self) -> dict[str, str]:
        """{key: holder} of the leases not yet expired."""
        now = self._clock()
        return {k: h for k, (h, exp) in self._held.items() if exp > now}


def lease_actor(location: str):
    """The lease actor of one cache location, created by whoever asks first (all nodes get the same one)."""
    import ray

    name = f"diad-sweep-leases-{json_hash(location, 12)}"
    # scheduling_strategy: not inside the asking trial's placement group (Tune's groups capture child actors),
    # which Tune removes when that trial ends: the actor would die with it and could not be restarted
    return ray.remote(LeaseTable).options(name=name, namespace=NAMESPACE, lifetime="detached",
                                           get_if_exists=True, num_cpus=0, scheduling_strategy="DEFAULT",
                                           max_restarts=-1, max_task_retries=-1).remote()


class Leases:
    """Client side: wait for a lease (or for someone else's finished entry), hold it with a heartbeat.

    `table` is a Ray actor handle of LeaseTable, or a LeaseTable itself (tests, one process).
    """

    def __init__(self, table, holder: str, ttl_s: float = TTL_S, poll_s: float = POLL_S):
        self.table, self.holder, self.ttl_s, self.poll_s = table, holder, ttl_s, poll_s

    def _call(self, method: str, *args):
        fn = getattr(self.table, method)
        if hasattr(fn, "remote"):
            import ray

            return ray.get(fn.remote(*args), timeout=CALL_TIMEOUT_S)  # a lost actor fails the trial, not hangs it
        return fn(*args)

    @contextlib.contextmanager
    def holding(self, key: str, what: str, finished: Callable[[], bool]) -> Iterator[bool]:
        """Yield False while holding the lease on `key`; yield True instead when `finished()` (another holder
        made the entry) turns true while waiting. The lease is released when the block ends, however it ends."""
        said = False
        while (other := self._call("acquire", key, self.holder, self.ttl_s)) is not None:
            if finished():
                yield True
                return
            if not said:
                print(f"waiting for {what}: {other} makes it", flush=True)
                said = True
            time.sleep(self.poll_s)
        beat = Heartbeat(self, key)
        try:
            yield False
        finally:
            beat.stop()
            self._call("release", key, self.holder)


class Heartbeat:
    """Renews one lease every ttl/4 seconds from a daemon thread until stopped."""

    def __init__(self, leases: Leases, key: str):
        self.leases, self.key = leases, key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lost = False
        while not self._stop.wait(self.leases.ttl_s / 4):
            try:
                other = self.leases._call("acquire", self.key, self.leases.holder, self.leases.ttl_s)
            except Exception as exc:  # the actor is gone for a moment: keep working, retry on the next beat
                print(f"lease {self.key}: heartbeat failed ({type(exc).__name__}); retrying", flush=True)
                continue
            if other is not None and not lost:  # we stalled past the TTL and someone took over
                print(f"lease {self.key}: lost to {other}; both may make this entry (same content)", flush=True)
                lost = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
