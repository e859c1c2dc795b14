"""Client id → the node that owned it moments ago, so that most calls to a busy client skip
the registry lookup (one Redis round trip each).

A route is only a hint: the owner re-checks that it holds the client and answers
ClientDisconnectedError otherwise, and the caller then looks it up again.
"""

from __future__ import annotations

__all__ = ["ClientRoutes"]

# How long a client's owner, once looked up, is trusted without asking the registry
# again. Short: a client that moved meanwhile is found by the retry below, but one
# whose node died would send calls to the dead node until then.
_ROUTE_TTL = 0.25
# Routes remembered at most (oldest dropped first): callers of many clients must not
# grow it without bound.
_MAX_ROUTES = 10_000


class ClientRoutes:
    """The routes one node remembers, each for ``_ROUTE_TTL`` seconds."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[int, float]] = {}

    def get(self, client_id: str, now: float) -> int | None:
        """The node, if remembered less than ``_ROUTE_TTL`` ago."""
        route = self._routes.get(client_id)
        if route is None:
            return None
        if route[1] <= now:
            del self._routes[client_id]
            return None
        return route[0]

    def remember(self, client_id: str, node_id: int, now: float) -> None:
        """Trust ``node_id`` as the owner for the next ``_ROUTE_TTL`` seconds."""
        routes = self._routes
        routes.pop(client_id, None)
        if len(routes) >= _MAX_ROUTES:
            del routes[next(iter(routes))]
        routes[client_id] = (node_id, now + _ROUTE_TTL)

    def forget(self, client_id: str) -> None:
        """Look the client up again next time."""
        self._routes.pop(client_id, None)

    def forget_node(self, node_id: int) -> None:
        """Drop every route to ``node_id`` (it left the mesh)."""
        for client_id in [c for c, (n, _) in self._routes.items() if n == node_id]:
            del self._routes[client_id]

    def clear(self) -> None:
        """Forget everything."""
        self._routes.clear()
