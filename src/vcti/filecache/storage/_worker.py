"""The measuring process: a local root's bulk file work, away from the server's GIL.

A full walk is one ``lstat`` per file, and a cycle with changes a few hundred metadata
writes (lock, read, write, rename) and a few thousand ``lstat`` calls: each a few
bytecodes of Python around a short system call. In the manager's thread they compete
with the hits of the server's other threads for the interpreter lock, and a thread back
from a short system call takes the lock again before a waiting thread has woken up: the
hits wait for the interpreter's forced switch, every 5 ms. One long-lived child process
does this work instead, and the manager's thread waits on a pipe, holding nothing.

The child is started on first use with the parent's interpreter and ``sys.path``. It
serves one request at a time (a length-prefixed pickle on its stdin; the answers on its
stdout, each written as soon as it is known, so that what was done is on record even if
the child dies), then rings a doorbell (a byte on a third pipe). The parent sleeps on
the doorbell and reads the answers then, in one go: waking for every answer would make
it take the interpreter lock back from the server's threads hundreds of times a batch.
During a long batch it drains the answers every few milliseconds, so that a full pipe
never stops the child. The child ignores Ctrl-C (its parent decides when it ends), and
exits when its stdin closes (the parent closed it, or died, kill -9 included) or after
:data:`IDLE_EXIT` seconds without a request; the next request starts a new one. Both
ends are this package: nothing else writes to the pipes.

No wait for the child is without a deadline. While it serves a request, a thread of the
child rings a heartbeat on the doorbell every :data:`HEARTBEAT` seconds; a child that
gives neither an answer nor a heartbeat for :data:`STALL` seconds (stopped with SIGSTOP,
frozen in its cgroup, swapped out for good) is killed, and the request fails with an
``OSError`` that its caller reports and works around. Ending the child waits
:data:`END_WAIT` seconds for it to leave on its own, then kills it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from . import _journal

#: Seconds without a request after which the process exits (restarted on demand): longer
#: than the hourly full walk's period, so that a leader's process lives from one walk to
#: the next; one that a process used once goes away.
IDLE_EXIT = 7200.0

#: Seconds between two heartbeats of a child serving a request.
HEARTBEAT = 0.5
#: Seconds without an answer or a heartbeat after which a child is taken for stuck.
STALL = 3.0
#: Seconds more a child just started has for its first sign of life, a heartbeat as soon
#: as its interpreter runs (one starting on a loaded machine).
START_GRACE = 3.0
#: Seconds a child is given to leave when it is ended, before it is killed.
END_WAIT = 2.0

#: Seconds between two drains of the answers while a batch runs.
_DRAIN = 0.02
#: Room for a batch's answers in the pipe (Linux's default is 64 KiB).
_PIPE_SIZE = 1 << 20

_HEADER = struct.Struct(">I")
_BOOT = (
    "import os, sys; os.write(int(sys.argv[3]), b'+'); "
    "import json; sys.path[:0] = json.loads(sys.argv[1]); "
    "from vcti.filecache.storage._worker import serve; "
    "serve(float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))"
)
#: The doorbell's bytes: every answer of the request is in the pipe; the child is alive.
_DONE, _BEAT = b".", b"+"

Update = Callable[[bytes | None], bytes]
#: What one metadata update gave: the record it was given and the one it wrote, or why not.
UpdateResult = tuple[bytes | None, bytes] | Exception


class Worker:
    """The parent's handle on one measuring process (started on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._bell = -1  # the doorbell's read end while a process runs
        self._started = False  # the process was started for the request being sent
        self._ender: weakref.finalize[[subprocess.Popen[bytes], int], Worker] | None = None
        _workers.add(self)

    def __repr__(self) -> str:
        proc = self._proc
        return f"<Worker {'pid ' + str(proc.pid) if proc is not None else 'not running'}>"

    def sizes(self, folders: Sequence[str], skip: str) -> dict[int, int]:
        """Bytes below each of ``folders`` by index; a folder that cannot be measured is left out.

        Raises:
            OSError: the process could not be started, or failed.
        """
        answers = self._call(("sizes", list(folders), skip), 1)
        result = answers[0]
        if isinstance(result, BaseException):
            raise result
        return dict(result)

    def update(self, root: str, updates: Sequence[tuple[str, Update]]) -> Iterator[UpdateResult]:
        """Run each ``(key, update)`` as the local backend's ``update_meta`` does, in order.

        Yields one result per update. If the process fails part way, what it answered is
        yielded and then an ``OSError`` raised: the updates not answered were not made,
        except perhaps the one it was running.

        Raises:
            TypeError: an update cannot be sent to another process (not picklable).
        """
        if not updates:
            return
        for item in updates:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise TypeError(f"updates are (key, update) pairs, not {item!r}")
            if not callable(item[1]):
                raise TypeError(f"the update of {item[0]!r} is not callable: {item[1]!r}")
        try:
            request = _dumps(("update", root, list(updates), _journal.writer()))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(f"metadata updates must be picklable: {exc}") from None
        answers: list[Any] = []
        failure: OSError | None = None
        try:
            answers = self._call(request, len(updates))
        except _Partial as partial:
            answers, failure = partial.answers, partial.error
        yield from answers
        if failure is not None:
            raise failure

    def read(
        self, root: str, keys: Sequence[str]
    ) -> list[tuple[str, tuple[Hashable, Hashable] | None, bytes | Exception | None]]:
        """Each key's stamps and metadata record on the local root ``root``, in order.

        Raises:
            OSError: the process could not be started, or failed.
        """
        if not keys:
            return []
        answer = self._call(("read", root, list(keys)), 1)[0]
        if isinstance(answer, BaseException):
            raise answer
        result: list[tuple[str, tuple[Hashable, Hashable] | None, bytes | Exception | None]]
        result = answer
        return result

    def walk(
        self, root: str
    ) -> tuple[list[tuple[str, Hashable, Hashable, int | None]], list[OSError]]:
        """Every model of the local root ``root`` with its stamps and size, and the errors.

        Raises:
            OSError: the process could not be started, or failed.
        """
        answer = self._call(("walk", root), 1)[0]
        if isinstance(answer, BaseException):
            raise answer
        result: tuple[list[tuple[str, Hashable, Hashable, int | None]], list[OSError]]
        result = answer
        return result

    def close(self) -> None:
        """End the process (it finishes the request it is serving; none is waiting)."""
        with self._lock:
            self._stop()

    # -- the pipe ------------------------------------------------------------------------

    def _call(self, request: object, answers: int) -> list[Any]:
        """Send ``request`` and read its ``answers`` frames, starting the process if needed."""
        data = request if isinstance(request, bytes) else _dumps(request)
        with self._lock:
            for attempt in range(2):
                proc = self._running()
                received: list[Any] = []
                try:
                    _write_frame(_fd(proc.stdin), data)
                    self._collect(_fd(proc.stdout), answers, received, self._started)
                    self._started = False
                    return received
                except _Stalled as exc:
                    proc.kill()  # a stopped process ends with SIGKILL too
                    self._stop()
                    error = OSError(exc.errno, str(exc.strerror))
                    if received:
                        raise _Partial(received, error) from None
                    raise error from None
                except (OSError, EOFError, pickle.UnpicklingError) as exc:
                    code = self._stop()
                    if code == 0 and not received and attempt == 0:
                        continue  # it had just left, idle, without reading: a new one
                    error = OSError(
                        errno.EIO, f"the measuring process failed (exit status {code}): {exc}"
                    )
                    if received:
                        raise _Partial(received, error) from exc
                    raise error from exc
            raise AssertionError("unreachable")  # pragma: no cover

    def _collect(self, answers: int, count: int, received: list[Any], starting: bool) -> None:
        """Read ``count`` answer frames into ``received`` once the doorbell rings.

        ``starting``: the child was started for this request (it has
        :data:`START_GRACE` seconds more for its first sign of life).

        Raises:
            EOFError: the child ended with answers missing.
            _Stalled: neither an answer nor a heartbeat came for :data:`STALL` seconds.
        """
        alive = time.monotonic() + (START_GRACE if starting else 0.0)
        while True:
            ready, _, _ = select.select([self._bell], [], [], _DRAIN)
            if ready:
                rung = os.read(self._bell, 64)  # rings and beats, or b"" from a child gone
                alive = time.monotonic()
                if not rung or _DONE in rung:
                    # Every answer is in the pipe by now: what is missing will never come.
                    while len(received) < count and select.select([answers], [], [], 0)[0]:
                        received.append(_read_frame(answers))
                    if len(received) < count:
                        raise EOFError(f"{len(received)} of {count} answers came")
                    return
            while len(received) < count and select.select([answers], [], [], 0)[0]:
                received.append(_read_frame(answers))  # a long batch: make room
                alive = time.monotonic()
            if time.monotonic() - alive > STALL:
                raise _Stalled(
                    errno.ETIMEDOUT,
                    f"the measuring process gave no sign of life for {STALL:g} s "
                    "(stopped or stuck); it was killed",
                )

    def _running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        status = self._stop()
        if status:  # killed, or crashed, between requests: reported; the next one starts anew
            raise OSError(errno.EIO, f"the measuring process had exited (exit status {status})")
        bell, ring = os.pipe()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    _BOOT,
                    json.dumps(sys.path),
                    repr(IDLE_EXIT),
                    str(ring),
                    repr(HEARTBEAT),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(ring,),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(bell)
            raise OSError(errno.EIO, f"the measuring process could not start: {exc}") from exc
        finally:
            os.close(ring)
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            with contextlib.suppress(OSError):
                fcntl.fcntl(_fd(proc.stdout), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self._proc, self._bell, self._started = proc, bell, True
        # A worker dropped without close(), or still running at exit, ends its process.
        self._ender = weakref.finalize(self, _end, proc, bell)
        return proc

    def _stop(self) -> int | None:
        """Close the pipes and reap the process; its exit status (None if none ran)."""
        ender, self._ender, self._proc, self._bell = self._ender, None, None, -1
        status: int | None = None if ender is None else ender()
        return status

    def _forget(self) -> None:
        """In a forked child: the parent's process is the parent's; close our copies only."""
        self._lock = threading.Lock()
        ender, self._ender, proc, self._proc = self._ender, None, self._proc, None
        if ender is not None:
            ender.detach()
        if self._bell >= 0:
            with contextlib.suppress(OSError):
                os.close(self._bell)
            self._bell = -1
        if proc is not None:
            _close_pipes(proc)
            proc.returncode = 0  # not this process's child: never waited for here


class _Stalled(OSError):
    """The child gave no sign of life for :data:`STALL` seconds."""


class _Partial(Exception):
    def __init__(self, answers: list[Any], error: OSError) -> None:
        super().__init__(error)
        self.answers = answers
        self.error = error


_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _forget_in_child() -> None:
    for worker in list(_workers):
        worker._forget()


os.register_at_fork(after_in_child=_forget_in_child)


def _end(proc: subprocess.Popen[bytes], bell: int) -> int:
    """Close the process's pipes (it exits at the end of its stdin) and reap it."""
    _close_pipes(proc)
    with contextlib.suppress(OSError):
        os.close(bell)
    try:
        return proc.wait(timeout=END_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()  # stopped, or busy with a long request nobody waits for any more
        return proc.wait()


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _fd(pipe: Any) -> int:
    assert pipe is not None
    fileno: int = pipe.fileno()
    return fileno


def _dumps(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _write_frame(fd: int, data: bytes) -> None:
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the pipe was closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Any:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))


# -- the child -------------------------------------------------------------------------


def serve(idle_exit: float, bell: int, heartbeat: float) -> None:
    """The measuring process's loop (the child runs this, never the parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, answers = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # nothing but answers goes to the parent's pipe
    busy = threading.Event()
    bell_lock = threading.Lock()

    def beat() -> None:
        # Alive and scheduled: what a parent waiting on a long request needs to know.
        while True:
            busy.wait()
            time.sleep(heartbeat)
            with bell_lock:
                if busy.is_set():
                    os.write(bell, _BEAT)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    while True:
        ready, _, _ = select.select([requests], [], [], idle_exit)
        if not ready:
            return  # idle: the parent starts a new one when it needs one
        try:
            request = _read_frame(requests)
        except EOFError:
            return  # the parent closed the pipe, or died
        busy.set()
        for answer in _answers(request):
            try:
                data = _dumps(answer)
            except Exception as exc:  # an answer that cannot travel is reported as such
                data = _dumps(OSError(errno.EIO, f"unpicklable answer: {exc!r}"))
            _write_frame(answers, data)
        with bell_lock:
            busy.clear()
            os.write(bell, _DONE)  # every answer is in the pipe


def _answers(request: tuple[Any, ...]) -> Iterator[object]:
    """The answers to one request; what stopped a request is its answer (bad input, say
    a key with a NUL byte), and the process serves the next one."""
    try:
        yield from _serve_one(request)
    except Exception as exc:  # the requests that can fail as a whole have one answer
        yield exc


def _serve_one(request: tuple[Any, ...]) -> Iterator[object]:
    from . import _fs  # noqa: PLC0415 - only the child needs them
    from .local import LocalStorage  # noqa: PLC0415

    if request[0] == "sizes":
        _, folders, skip = request
        sizes: list[tuple[int, int]] = []
        for index, folder in enumerate(folders):
            try:
                sizes.append((index, _fs.tree_size(folder, skip=skip)))
            except OSError:
                continue  # the parent measures it alone, to learn why
        yield sizes
    elif request[0] == "walk":
        yield LocalStorage(request[1])._walked()
    elif request[0] == "read":
        _, root, keys = request
        storage = LocalStorage(root)
        yield [storage._stamped_record(key) for key in keys]
    elif request[0] == "update":
        _, root, updates, parent = request
        storage = LocalStorage(root)
        for key, update in updates:
            try:
                yield storage._update_meta(key, update, on_behalf=parent)
            except Exception as exc:
                yield exc
    else:
        yield OSError(errno.EINVAL, f"unknown request {request[0]!r}")
