"""A throw-away one-node Ceph and its S3 gateway on 127.0.0.1.

Run it with ``python -m tests.storage.ceph_gateway``.

It needs Debian's (or any distribution's) ``ceph-mon``, ``ceph-osd``, ``radosgw`` and
``ceph-common`` packages. Everything lives in a temporary directory: one monitor, one OSD
keeping its objects in RAM (``memstore``), pools of size 1, cephx authentication (the
gateway cannot log in to a monitor without it), and the gateway (``beast`` frontend) on a
free port of 127.0.0.1 with one S3 user.

Run as a program, it prints one line, ``URL ACCESS_KEY SECRET_KEY``, once the gateway
answers (the keys are ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` when set), then
runs until its stdin is closed (the process that started it ended, however it ended) or
it is terminated; then it stops every daemon it started and removes the directory. A
failure to start prints ``error: WHY`` instead of the line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

#: The programs a gateway needs, and the Debian package of each.
PROGRAMS = {
    "ceph-mon": "ceph-mon",
    "ceph-osd": "ceph-osd",
    "radosgw": "radosgw",
    "radosgw-admin": "radosgw",
    "ceph": "ceph-common",
    "ceph-authtool": "ceph-common",
    "monmaptool": "ceph-common",
}
#: The S3 user's keys: those of the environment, if set (the tests use the same for
#: every server).
ACCESS_KEY = os.environ.get("AWS_ACCESS_KEY_ID") or "filecache-test"
SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY") or "filecache-test-secret"
START_TIMEOUT = 120.0


def missing_programs() -> list[str]:
    """The Debian packages to install before a gateway can start here (none: [])."""
    return sorted({pkg for prog, pkg in PROGRAMS.items() if shutil.which(prog) is None})


def _die_with_parent() -> None:
    """In a daemon, before exec: be terminated when this starter dies, even by kill -9."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CephGateway:
    """One monitor, one in-memory OSD and one S3 gateway, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.conf = directory / "ceph.conf"
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.url = ""

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=60, check=False, cwd=self.dir
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def _ceph(self, *args: str) -> str:
        return self._run("ceph", "-c", str(self.conf), "--connect-timeout", "30", *args)

    def _daemon(self, *args: str) -> None:
        log = open(self.dir / "log" / f"{Path(args[0]).name}.out", "ab")  # noqa: SIM115
        with log:
            self.daemons.append(
                subprocess.Popen(
                    [*args, "-c", str(self.conf), "-f"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                    start_new_session=True,  # a Ctrl-C of the tests reaches us, not them
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 (no thread runs yet)
                )
            )

    def start(self) -> None:
        """Start the daemons and make the S3 user; ``url`` answers when this returns."""
        d = self.dir
        for sub in ("log", "run", "mon", "osd/ceph-0", "rgw"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        mon_port, rgw_port = _free_port(), _free_port()
        self.conf.write_text(
            f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public network = 127.0.0.1/32
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {d}/$name.keyring
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
mon data = {d}/mon/$cluster-$id
osd data = {d}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon osd full ratio = .99
mon osd nearfull ratio = .98
osd failsafe full ratio = .995

[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
"""
        )
        mon_keyring, admin = d / "mon..keyring", d / "client.admin.keyring"
        self._run(
            "ceph-authtool", "--create-keyring", str(mon_keyring), "--gen-key",
            "-n", "mon.", "--cap", "mon", "allow *",
        )  # fmt: skip
        self._run(
            "ceph-authtool", "--create-keyring", str(admin), "--gen-key", "-n", "client.admin",
            "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *",
        )  # fmt: skip
        self._run("ceph-authtool", str(mon_keyring), "--import-keyring", str(admin))
        self._run(
            "monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]",
            "--fsid", fsid, str(d / "monmap"),
        )  # fmt: skip
        self._run(
            "ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a",
            "--monmap", str(d / "monmap"), "--keyring", str(mon_keyring),
        )  # fmt: skip
        self._daemon("ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        osd_keyring = d / f"osd.{osd_id}.keyring"
        self._run(
            "ceph-authtool",
            "--create-keyring",
            str(osd_keyring),
            "--gen-key",
            "-n",
            f"osd.{osd_id}",
        )
        self._ceph(
            "auth", "add", f"osd.{osd_id}", "osd", "allow *", "mon", "allow profile osd",
            "-i", str(osd_keyring),
        )  # fmt: skip
        (d / "osd" / f"ceph-{osd_id}").mkdir(parents=True, exist_ok=True)
        self._run("ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("ceph-osd", "-i", osd_id)
        self._ceph(
            "auth", "get-or-create", "client.rgw.gw", "mon", "allow rw", "osd", "allow rwx",
            "-o", str(d / "client.rgw.gw.keyring"),
        )  # fmt: skip
        self._daemon("radosgw", "-n", "client.rgw.gw")
        self.url = f"http://127.0.0.1:{rgw_port}"
        self._wait_for_gateway()
        self._run(
            "radosgw-admin", "-c", str(self.conf), "user", "create", "--uid", "filecache",
            "--display-name", "filecache tests",
            "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        )  # fmt: skip

    def _wait_for_gateway(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for proc in self.daemons:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{proc.args[0]} exited with {proc.returncode}; see {self.dir}/log"
                    )
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return
            except urllib.error.HTTPError:
                return  # it answers (403 for an anonymous request)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the gateway did not answer in {START_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop every daemon (gateway first), then wait for each to end."""
        for proc in reversed(self.daemons):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.daemons.clear()


def main() -> None:
    missing = missing_programs()
    if missing:
        print(f"error: Ceph is not installed (apt-get install {' '.join(missing)})", flush=True)
        return
    directory = Path(tempfile.mkdtemp(prefix="filecache-ceph-"))
    gateway = CephGateway(directory)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            gateway.start()
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            log = directory / "log"
            tails = [
                f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:]
                for p in sorted(log.glob("*"))
            ] if log.exists() else []  # fmt: skip
            sys.stderr.write("\n".join(tails) + "\n")
            print(f"error: the Ceph gateway did not start: {exc}".replace("\n", " "), flush=True)
            return
        print(gateway.url, ACCESS_KEY, SECRET_KEY, flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), stopping.set()), daemon=True).start()
        stopping.wait()
    finally:
        gateway.stop()
        shutil.rmtree(directory, ignore_errors=True)
        os._exit(0)


if __name__ == "__main__":
    main()
