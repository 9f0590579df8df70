"""What a first-come-first-served pool predicts for a closed-loop row: how many requests wait longer
than DB_POOL_TIMEOUT for a connection, and so get a 503.

`clients` send a request each at once, and the next as soon as one answers; `connections` serve them
in arrival order, each holding its connection `hold` seconds; a request that would wait more than
`timeout` leaves at that moment with a 503 (holding no connection) and its client sends again. The
hold is measured by the row itself: with the pool always busy, connections / req/s. The prediction
is a cliff (at 400 in flight on 40 connections, the last of each wave waits 9 holds, 4.5 s for 0.5 s
holds), so it is given for holds HOLD_SLACK shorter and longer: the row is judged against the range.
"""

import heapq

HOLD_SLACK = 0.02


def timeouts(clients: int, connections: int, hold: float, timeout: float, requests: int) -> int:
    free_at = [0.0] * connections  # when each connection is next free (a heap)
    arrivals = [0.0] * clients  # when each client sends its next request (a heap)
    timed_out = 0
    for _ in range(requests):
        arrival = heapq.heappop(arrivals)
        start = max(arrival, free_at[0])  # the earliest free connection, in arrival order
        if start - arrival > timeout:
            timed_out += 1
            heapq.heappush(arrivals, arrival + timeout)
        else:
            heapq.heapreplace(free_at, start + hold)
            heapq.heappush(arrivals, start + hold)
    return timed_out


def predicted_range(
    clients: int, connections: int, served_rps: float, timeout: float, requests: int
) -> tuple[int, int] | None:
    """(fewest, most) 503s FIFO predicts for holds within HOLD_SLACK of connections / served_rps."""
    if not served_rps:
        return None
    hold = connections / served_rps
    shorter, longer = hold * (1 - HOLD_SLACK), hold * (1 + HOLD_SLACK)
    return tuple(timeouts(clients, connections, h, timeout, requests) for h in (shorter, longer))
