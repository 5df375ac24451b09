"""Several servers behind one setting: ``TRIGGERFISH_API_URL=http://a:3030,http://b:3030``.

The SDK's client and the worker take a comma-separated list of server URLs
(all on one database). They talk to one server at a time and move to the next
in the list (wrapping around) when the current one fails them:

- at once when the connection is refused (the server is down; nothing was sent);
- after ``connect_timeout`` when the connection cannot be made (a host gone
  from the network);
- when a server accepts the connection but does not answer (a hung process):
  a client's call that may be sent again (a read, a trigger with its request
  key) after ``HUNG_AFTER`` seconds, with the rest of its ``timeout`` left for
  the last server of its tries; any other call after the whole ``timeout``.
  A worker's heartbeat waits most of a heartbeat interval, and the worker's
  other calls waiting on that server go along (``worker/api_client.py``).

They stay on the server that answered. One URL behaves as it always has: no
retry, the same errors. A load balancer in front of the servers is one URL;
the servers' ``/healthz`` (the process is up) and ``/readyz`` (its database
answers) are for its health checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: seconds to wait for a connection to a server before moving to the next one,
#: when there are several (with one URL, the client's ``timeout`` applies)
CONNECT_TIMEOUT = 5.0
#: seconds one server of several has to answer a call that may be sent again
#: before the next is tried (a slow but live server only costs the move: the
#: request key makes the second sending answer the first one's run)
HUNG_AFTER = 5.0


def split_urls(value: str) -> list[str]:
    """The server URLs in ``value`` (comma-separated), without trailing slashes.

    Example: ``split_urls("http://a:3030/, http://b:3030")`` is
    ``["http://a:3030", "http://b:3030"]``.
    """
    urls = [part.strip().rstrip("/") for part in value.split(",")]
    urls = [url for url in urls if url]
    if not urls:
        raise ValueError(f"no server URL in {value!r}")
    return urls


@dataclass
class Servers:
    """The server URLs and the one in use (see the module docstring)."""

    urls: list[str]
    index: int = 0
    #: how many times the client moved to another server
    moves: int = field(default=0)

    @classmethod
    def parse(cls, value: str) -> Servers:
        return cls(split_urls(value))

    @property
    def current(self) -> str:
        return self.urls[self.index]

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def order(self) -> list[int]:
        """The indexes to try for one call: the current server first, then the others."""
        n = len(self.urls)
        return [(self.index + step) % n for step in range(n)]

    def failed(self, index: int) -> None:
        """Server ``index`` failed a call: the next calls go to the one after it,
        unless another call already moved on (concurrent calls fail together)."""
        if index == self.index and self.several:
            self.index = (index + 1) % len(self.urls)
            self.moves += 1

    def answered(self, index: int) -> None:
        """Server ``index`` answered: the next calls go there."""
        self.index = index

    def listed(self, first: int | None = None) -> str:
        """The URLs as a setting, starting with ``first`` (default: the current one)."""
        start = self.index if first is None else first
        n = len(self.urls)
        return ",".join(self.urls[(start + step) % n] for step in range(n))
