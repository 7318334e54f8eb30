"""A kinetic tournament: the largest ``size x (now - last)`` at a clock that only advances.

:class:`~vcti.filecache.policies.idle_size.IdleSizeState` asks for the model with the
largest idle time x size at each eviction. Sorting every model each time is O(n log n)
per victim (400 times slower than the other policies on a replay). Each model's weight
is a line in time, ``size x (t - last)``, and two lines cross at most once, so a binary
tournament over the models keeps, at each match, the winner now and the time the loser
may overtake it (Basch, Guibas and Hershberger, "Data structures for mobile data", 1997).
Moving the clock replays only the matches whose time has come; adding, updating or
removing a model replays the matches on its path: O(log n) each, amortized.

Ties are broken as the policy's ``order()`` breaks them: the earlier last access, then
the smaller name; weights are computed with the same expression, so the winner is the
first of ``order()`` at any time no earlier than every entry's last access (before it,
the policy clips idle times at 0, and the lines do not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

_INF = math.inf


class KineticTournament:
    """Entries by id, with a size, a last access and a name; :meth:`top` is the heaviest."""

    def __init__(self) -> None:
        self._capacity = 64
        self._keys: list[str | None] = [None] * self._capacity  # the names
        self._ids: list[object] = [None] * self._capacity
        self._sizes: list[int] = [0] * self._capacity
        self._lasts: list[float] = [0.0] * self._capacity
        self._slots: dict[object, int] = {}
        self._free: list[int] = list(range(self._capacity - 1, -1, -1))
        n = 2 * self._capacity
        self._win = [-1] * n  # the winning slot of each match (-1: no model below)
        self._fail = [_INF] * n  # when a match's loser may overtake its winner
        self._due = [_INF] * n  # the earliest such time in the subtree
        self.now = -_INF

    def __len__(self) -> int:
        return len(self._slots)

    def top(self) -> object:
        """The id of the heaviest entry at the current time (None when empty)."""
        slot = self._win[1]
        return None if slot < 0 else self._ids[slot]

    def advance(self, now: float) -> None:
        """Move the clock to ``now`` (never back) and replay the matches whose time came."""
        if now <= self.now:
            return
        self.now = now
        due = self._due
        if due[1] > now:
            return
        # Depth first, children before parents: a match is replayed after the matches
        # below it that had to be.
        stack = [1]
        order: list[int] = []
        leaves = self._capacity
        while stack:
            node = stack.pop()
            order.append(node)
            left = 2 * node
            if left < leaves:
                if due[left] <= now:
                    stack.append(left)
                if due[left + 1] <= now:
                    stack.append(left + 1)
        self._replay(reversed(order))

    def set(self, ident: object, size: int, last: float, name: str) -> None:
        """Add the entry ``ident``, or update it: its size, last access and tie-breaking name."""
        slot = self._slots.get(ident)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self._slots[ident] = slot
            self._ids[slot] = ident
        self._keys[slot] = name
        self._sizes[slot] = size
        self._lasts[slot] = last
        self._win[self._capacity + slot] = slot
        self._replay_path(slot)

    def remove(self, ident: object) -> bool:
        """Remove the entry ``ident``; False if it was not there."""
        slot = self._slots.pop(ident, None)
        if slot is None:
            return False
        self._keys[slot] = None
        self._ids[slot] = None
        self._win[self._capacity + slot] = -1
        self._free.append(slot)
        self._replay_path(slot)
        return True

    def _replay_path(self, slot: int) -> None:
        """Replay the matches from ``slot``'s leaf up, while their outcome changes.

        The match of :meth:`_replay`, one node at a time: this loop is the state's hot path.
        """
        node = (self._capacity + slot) >> 1
        win, due, fails = self._win, self._due, self._fail
        sizes, lasts, keys = self._sizes, self._lasts, self._keys
        now = self.now
        while node:
            before_win = win[node]
            before_due = due[node]
            left = 2 * node
            a = win[left]
            b = win[left + 1]
            fail = _INF
            if a < 0 or b < 0:
                winner = a if b < 0 else b
            else:
                sa = sizes[a]
                sb = sizes[b]
                la = lasts[a]
                lb = lasts[b]
                va = (now - la) * sa
                vb = (now - lb) * sb
                if va > vb or (
                    va == vb and (la < lb or (la == lb and keys[a] < keys[b]))  # type: ignore[operator]
                ):
                    winner = a
                    if sb > sa:  # when b overtakes a (see _replay)
                        fail = la + sb * (lb - la) / (sb - sa)
                        fail -= 1e-6 * (abs(fail - la) + 1.0)
                        if fail <= now:
                            fail = math.nextafter(now, _INF)
                else:
                    winner = b
                    if sa > sb:
                        fail = lb + sa * (la - lb) / (sa - sb)
                        fail -= 1e-6 * (abs(fail - lb) + 1.0)
                        if fail <= now:
                            fail = math.nextafter(now, _INF)
            win[node] = winner
            fails[node] = fail
            soonest = due[left]
            right = due[left + 1]
            if right < soonest:  # noqa: PLR1730 - the hot path: min() costs a call
                soonest = right
            if fail < soonest:  # noqa: PLR1730
                soonest = fail
            due[node] = soonest
            if winner == before_win and soonest == before_due and winner != slot:
                return  # the matches above see the same winner, unchanged, and due time
            node >>= 1

    def _replay(self, nodes: Iterable[int]) -> None:
        """Replay the matches of ``nodes``, each after the matches below it that need it.

        A match keeps the heavier entry now (ties: the earlier last access, then the
        smaller name) and when the loser's steeper line overtakes the winner's, ``lw + sl
        (ll - lw) / (sl - sw)`` (w the winner, l the loser), written so that large epoch
        times do not cancel: a little early is only a replay more, and never at the
        present, so that one advance ends. Written out, here and in :meth:`_replay_path`:
        a call per match costs a third of it.
        """
        now = self.now
        win, fails, due = self._win, self._fail, self._due
        sizes, lasts, keys = self._sizes, self._lasts, self._keys
        for node in nodes:
            left = 2 * node
            a = win[left]
            b = win[left + 1]
            fail = _INF
            if a < 0 or b < 0:
                win[node] = a if b < 0 else b
            else:
                sa = sizes[a]
                sb = sizes[b]
                la = lasts[a]
                lb = lasts[b]
                va = (now - la) * sa
                vb = (now - lb) * sb
                if va > vb or (
                    va == vb and (la < lb or (la == lb and keys[a] < keys[b]))  # type: ignore[operator]
                ):
                    win[node] = a
                    if sb > sa:
                        fail = la + sb * (lb - la) / (sb - sa)
                        fail -= 1e-6 * (abs(fail - la) + 1.0)
                        if fail <= now:
                            fail = math.nextafter(now, _INF)
                else:
                    win[node] = b
                    if sa > sb:
                        fail = lb + sa * (la - lb) / (sa - sb)
                        fail -= 1e-6 * (abs(fail - lb) + 1.0)
                        if fail <= now:
                            fail = math.nextafter(now, _INF)
            fails[node] = fail
            soonest = due[left]
            right = due[left + 1]
            if right < soonest:  # noqa: PLR1730 - the hot path: min() costs a call
                soonest = right
            due[node] = fail if fail < soonest else soonest

    def _grow(self) -> None:
        old = self._capacity
        capacity = 2 * old
        self._keys.extend([None] * old)
        self._ids.extend([None] * old)
        self._sizes.extend([0] * old)
        self._lasts.extend([0.0] * old)
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._capacity = capacity
        n = 2 * capacity
        self._win = [-1] * n
        self._fail = [_INF] * n
        self._due = [_INF] * n
        for slot in range(old):
            if self._ids[slot] is not None:
                self._win[capacity + slot] = slot
        self._replay(range(capacity - 1, 0, -1))
