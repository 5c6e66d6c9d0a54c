"""A throw-away single-node SLURM cluster on this machine, for the scheduler tests (stdlib only).

Everything lives in one private state directory: the munge key and socket, ``slurm.conf``, the
slurmctld state, the slurmd spool and every log. Nothing under ``/etc`` is read or written, the
daemons listen on free ports and talk through their own munge socket, so a site SLURM or munge
on the same machine is not touched. The node is declared exactly as ``slurmd -C`` reports the
hardware (CPUs, sockets, cores, memory); there is no cgroup plugin (``proctrack/linuxproc``,
``task/none``), so it needs no cgroup.conf and no systemd.

Needs root (slurmd starts jobs as the submitting user) and the Debian packages in
:data:`PACKAGES`; :func:`unavailable_reason` says why not otherwise. :meth:`LocalSlurm.stop`
cancels every job of this cluster and ends only the processes it started (the recorded pids,
checked against their command lines) plus any job step daemon that still holds a file in the
state directory.

Command line (``SLURM_CONF`` must point at the cluster for sbatch/squeue/scancel/scontrol)::

    python3 tests/scheduler/slurm_local.py install          # apt-get the packages (root)
    python3 tests/scheduler/slurm_local.py check            # why it cannot run here, or "ok"
    eval "$(python3 tests/scheduler/slurm_local.py up /tmp/gen5-slurm)"   # start; exports
    python3 tests/scheduler/slurm_local.py down /tmp/gen5-slurm           # stop and clean up
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
"""Debian/Ubuntu packages that provide everything below."""
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
PARTITION = "gen5test"
DAEMONS = ("munged", "slurmctld", "slurmd")
INSTALL_HINT = (
    "as root: apt-get update && apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
)


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be started on this machine, or ``None`` when it can."""
    if not sys.platform.startswith("linux"):
        return f"a local SLURM needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "a local SLURM needs root (slurmd runs jobs as their user); not running as root"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}); {INSTALL_HINT}"
    return None


def install() -> int:
    """apt-get the packages when root and apt-get exist (never start the packaged services).

    Returns 0 when the packages are installed afterwards, else 1 with the reason printed; never
    raises, so CI goes on and the scheduler tests skip saying why.
    """
    if all(shutil.which(b) for b in BINARIES):
        print("slurm_local: SLURM and munge already installed")
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("slurm_local: not root or no apt-get; SLURM not installed (scheduler tests skip)")
        return 1
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # the packaged services must not start: the tests start their own daemons
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    t0 = time.monotonic()
    try:
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
                print(f"slurm_local: {' '.join(cmd)} failed: {' | '.join(tail)}")
                return 1
    finally:
        if own_policy:
            policy.unlink()
    print(f"slurm_local: installed {' '.join(PACKAGES)} in {time.monotonic() - t0:.1f} s")
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """``NodeName=... CPUs=... RealMemory=...``: the hardware as slurmd itself detects it."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    return line.strip()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int, name: str) -> bool:
    _reap(pid)  # a child of ours that exited is a zombie until reaped
    return name in _cmdline(pid)


def _end(pid: int, name: str, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, the process ``pid`` if it still is ``name``."""
    if not _alive(pid, name):
        return
    with _suppress_lookup():
        os.kill(pid, signal.SIGTERM)
    t0 = time.monotonic()
    while _alive(pid, name) and time.monotonic() - t0 < grace_s:
        time.sleep(0.05)
    if _alive(pid, name):
        with _suppress_lookup():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


class _suppress_lookup:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is ProcessLookupError


class LocalSlurm:
    """A single-node SLURM in ``root`` (a fresh, private directory); see the module docstring."""

    def __init__(self, root: str | Path, partition: str = PARTITION):
        self.root = Path(root).resolve()
        self.partition = partition
        self.conf = self.root / "slurm.conf"
        self.node = ""
        self._pids_file = self.root / "daemons.json"
        self._procs: dict[str, subprocess.Popen] = {}

    # -- environment for clients -------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Variables that point sbatch/squeue/scancel/scontrol at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _run(self, *cmd: str, check: bool = True) -> str:
        res = subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True, text=True)
        if check and res.returncode != 0:
            msg = f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}"
            raise RuntimeError(msg)
        return res.stdout

    def squeue(self) -> list[dict[str, str]]:
        """Jobs of this cluster: ``id``, ``state``, ``name``."""
        out = self._run("squeue", "-h", "-o", "%i|%T|%j")
        rows = [ln.split("|") for ln in out.splitlines() if ln.strip()]
        return [{"id": r[0], "state": r[1], "name": r[2]} for r in rows]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (works for finished jobs until MinJobAge)."""
        out = self._run("scontrol", "show", "job", "-o", job_id).strip()
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def batch_script(self, job_id: str) -> str:
        """The batch script slurmctld holds for ``job_id`` (what sbatch actually submitted)."""
        return self._run("scontrol", "write", "batch_script", job_id, "-")

    def scancel(self, job_id: str) -> None:
        self._run("scancel", job_id)

    def log_tail(self, n: int = 15) -> str:
        parts = []
        for name in (*(f"{d}.stdout" for d in DAEMONS), "munged.log", "slurmctld.log",
                     "slurmd.log"):
            p = self.root / name
            if p.exists() and p.stat().st_size:
                lines = p.read_text(errors="replace").splitlines()[-n:]
                parts.append(f"--- {p}\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- lifecycle ---------------------------------------------------------------------------
    def _write_config(self) -> None:
        r = self.root
        node_line = _node_line()
        self.node = node_line.split()[0].split("=", 1)[1]
        for d, mode in (("ctld", 0o700), ("spool", 0o700), ("key", 0o700), ("munge", 0o755)):
            (r / d).mkdir(exist_ok=True)
            (r / d).chmod(mode)  # munged: the socket's directory must be searchable by all
        key = r / "key" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        lines = [
            "# written by tests/scheduler/slurm_local.py: a private single-node cluster",
            "ClusterName=gen5test",
            f"SlurmctldHost={self.node}(127.0.0.1)",  # loopback only: no DNS needed
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={r / 'ctld'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "KillWait=5",
            "InactiveLimit=0",
            "MinJobAge=600",
            f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE "
            "State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, cmd: list[str], pids: dict[str, int]) -> None:
        log = open(self.root / f"{name}.stdout", "ab")  # noqa: SIM115 - owned by the daemon
        proc = subprocess.Popen(
            cmd, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root,
        )
        log.close()
        self._procs[name] = proc
        pids[name] = proc.pid
        self._pids_file.write_text(json.dumps(pids))

    def _wait(self, pred, what: str, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        while not pred():
            if time.monotonic() - t0 > timeout:
                self.stop()
                msg = f"local SLURM: timed out after {timeout:.0f} s waiting for {what}"
                raise RuntimeError(msg + "\n" + self.log_tail())
            time.sleep(0.1)

    def _node_state(self) -> str:
        res = subprocess.run(
            ["sinfo", "-h", "-n", self.node, "-o", "%T"], env={**os.environ, **self.env},
            capture_output=True, text=True,
        )
        return res.stdout.strip() if res.returncode == 0 else ""

    def start(self) -> LocalSlurm:
        """Write the config, start munged, slurmctld and slurmd; wait for the node to be idle.

        Every directory above ``root`` must be searchable by all users (munged checks).
        """
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if self._pids_file.exists():
            msg = f"{self.root} already holds a local SLURM ({self._pids_file}); stop it first"
            raise RuntimeError(msg)
        self._write_config()
        m = self.root / "munge"
        pids: dict[str, int] = {}
        self._spawn("munged", [
            "munged", "--foreground", f"--socket={m / 'munge.socket'}",
            f"--key-file={self.root / 'key' / 'munge.key'}",
            f"--pid-file={self.root / 'key' / 'munged.pid'}",
            f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={self.root / 'key' / 'munged.seed'}",
        ], pids)
        self._wait(lambda: (m / "munge.socket").exists(), "munged's socket", 30)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)], pids)
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)], pids)
        self._wait(lambda: self._node_state() in ("idle", "idle~"), f"node {self.node} idle")
        return self

    def stop(self) -> None:
        """Cancel this cluster's jobs, end the daemons it started and any leftover job steps."""
        if not self._pids_file.exists():
            return
        pids: dict[str, int] = json.loads(self._pids_file.read_text())
        if _alive(pids.get("slurmctld", -1), "slurmctld"):
            self._run("scancel", "--partition", self.partition, check=False)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:
                try:
                    if not self.squeue():
                        break
                except RuntimeError:
                    break
                time.sleep(0.2)
        t0 = time.monotonic()  # a finished job's step daemon exits on its own within a second
        while self._leftover_steps() and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        for name in reversed(DAEMONS):
            if name in pids:
                _end(pids[name], name)
            if name in self._procs:
                self._procs.pop(name).poll()  # already reaped by pid: records the exit
        for pid in self._leftover_steps():
            _end(pid, "slurmstepd", grace_s=5)
        self._pids_file.unlink()

    def _leftover_steps(self) -> list[int]:
        """slurmstepd processes of this cluster: those with a file open under our state dir."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or "slurmstepd" not in _cmdline(int(d.name)):
                continue
            try:
                fds = [os.readlink(f) for f in (d / "fd").iterdir()]
            except OSError:
                continue
            if any(f.startswith(str(self.root)) for f in fds):
                out.append(int(d.name))
        return out

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "install":
        return install()
    if cmd == "check":
        reason = unavailable_reason()
        print(reason or "ok")
        return 1 if reason else 0
    if cmd in ("up", "down") and len(argv) == 2:
        cluster = LocalSlurm(argv[1])
        if cmd == "up":
            cluster.start()
            print(f"export SLURM_CONF={cluster.conf}")
            print(f"# partition {cluster.partition} on node {cluster.node}", file=sys.stderr)
        else:
            cluster.stop()
        return 0
    print(__doc__.split("Command line", 1)[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
