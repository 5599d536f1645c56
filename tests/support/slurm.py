"""A real slurmctld (and its munged) in a temporary directory, for tests and benchmarks.

:class:`SlurmController` writes a munge key, starts ``munged`` on its own socket, writes
a slurm.conf that includes gpusched's export of a site as CLOUD nodes (no slurmd: the
controller allocates nodes and never waits for a node daemon), starts ``slurmctld -D``
on a free port of 127.0.0.1 with its own state directory, and stops both again.  Nothing
touches /etc/slurm, /etc/munge or a system-wide daemon: every path is under the
directory given, and clients find the controller through ``SLURM_CONF`` in
:attr:`SlurmController.env`.  Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from gpusched import Cluster
from gpusched.adapters.slurm import expand_hostlist, write_export

PROGRAMS = ("munged", "slurmctld", "sbatch", "squeue", "scontrol", "scancel")
APT = "slurmctld slurm-client munge"
START_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmError(RuntimeError):
    """A Slurm daemon or command did not do what the test needed; the message says what."""


class SlurmController:
    """munged + slurmctld for ``cluster``, its nodes ``State=CLOUD``, under ``root``.

    ``extra_conf`` lines are appended to slurm.conf (``JobSubmitPlugins=lua``,
    ``PrologSlurmctld=...``); files a line names must already be in :attr:`conf_dir`.
    """

    def __init__(self, root: Path, cluster: Cluster, programs: dict[str, str],
                 extra_conf: Sequence[str] = (), exclusive: bool = True) -> None:
        self.exclusive = exclusive
        self.root = Path(root)
        self.cluster = cluster
        self.programs = programs
        self.extra_conf = list(extra_conf)
        self.conf_dir = self.root / "etc"
        self.conf = self.conf_dir / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.log = self.root / "slurmctld.log"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._munged: subprocess.Popen[bytes] | None = None
        self._slurmctld: subprocess.Popen[bytes] | None = None
        for d in (self.conf_dir, self.root / "state", self.root / "spool", self.root / "munge"):
            d.mkdir(parents=True, exist_ok=True)
        # munged refuses a key or socket directory others may write to
        self.root.chmod(0o755)
        (self.root / "munge").chmod(0o700)

    # ---- start and stop ---------------------------------------------------------------

    def write_conf(self) -> None:
        write_export(self.cluster, self.conf_dir, cloud=True, exclusive=self.exclusive,
                     overwrite=True)
        r = self.root
        lines = [
            "ClusterName=gpusched-test",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmctldLogFile={self.log}",
            "SlurmctldDebug=info",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "TopologyPlugin=topology/tree",
            "ProctrackType=proctrack/linuxproc",
            "MpiDefault=none",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            # CLOUD nodes with no slurmd: "resuming" one does nothing, and allocated nodes
            # wait in CONFIGURING (with a real NodeList) for a boot that never has to come
            "SuspendProgram=/bin/true",
            "ResumeProgram=/bin/true",
            "SuspendTime=3600",
            "SuspendTimeout=5",
            "ResumeTimeout=7200",
            # no cap on nodes "resumed" or "suspended" per minute (300 by default): past it
            # every allocation waits, and each RPC answered here took 5 s
            "ResumeRate=0",
            "SuspendRate=0",
            "TreeWidth=65533",
            # powered-down CLOUD nodes are hidden from scontrol and sinfo without it
            "PrivateData=cloud",
            "MaxJobCount=200000",
            "MinJobAge=2",
            f"Include {self.conf_dir / 'slurm-nodes.conf'}",
            *self.extra_conf,
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "SlurmController":
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        m = self.root / "munge"
        self._munged = subprocess.Popen(
            [self.programs["munged"], "--foreground", "--force",
             f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
             f"--seed-file={m / 'munged.seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self._wait(lambda: self.munge_socket.exists(), "munged's socket",
                       lambda: self._munged_failed())
        except BaseException:
            self.stop()
            raise
        self.write_conf()
        self._slurmctld = subprocess.Popen(
            [self.programs["slurmctld"], "-D", "-i", "-f", str(self.conf)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # slurmctld builds its node table before it answers: allow for a large site
            self._wait(self._responds, "slurmctld to answer `scontrol ping`", self._ctld_failed,
                       START_TIMEOUT_S + self.cluster.num_nodes / 100)
        except BaseException:
            self.stop()
            raise
        return self

    def _munged_failed(self) -> str | None:
        if self._munged is not None and self._munged.poll() is not None:
            return f"munged exited: {self._munged.stderr.read().decode() if self._munged.stderr else ''}"
        return None

    def _ctld_failed(self) -> str | None:
        if self._slurmctld is not None and self._slurmctld.poll() is not None:
            err = self._slurmctld.stderr.read().decode() if self._slurmctld.stderr else ""
            return f"slurmctld exited: {err}\n{self.log_tail()}"
        return None

    def _responds(self) -> bool:
        out = subprocess.run([self.programs["scontrol"], "ping"], env=self.env,
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        return "is UP" in out.stdout

    @staticmethod
    def _wait(ready: Any, what: str, failed: Any, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            why = failed()
            if why:
                raise SlurmError(why)
            if ready():
                return
            time.sleep(0.2)
        raise SlurmError(f"no {what} within {timeout_s:.0f} s")

    def stop(self) -> None:
        for proc in (self._slurmctld, self._munged):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._slurmctld = self._munged = None

    def __enter__(self) -> "SlurmController":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no slurmctld log)"

    # ---- clients ----------------------------------------------------------------------

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([self.programs[program], *args], env=self.env,
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        if check and out.returncode != 0:
            raise SlurmError(f"{program} {' '.join(args)} failed ({out.returncode}): "
                             f"{out.stderr.strip()}")
        return out

    def sbatch(self, *args: str) -> int:
        """Submit a batch job; its Slurm job id."""
        out = self.run("sbatch", "--parsable", "--chdir", str(self.root), "--output=/dev/null",
                       *args)
        return int(out.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (``JobState``, ``NodeList``, ``AdminComment``...)."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout.strip()
        # values may hold spaces only in the last fields (Command=..., Comment=...); split
        # at " Key=" boundaries
        fields: dict[str, str] = {}
        for match in re.finditer(r"(?:^| )([A-Za-z:/]+)=(.*?)(?= [A-Za-z:/]+=|$)", out):
            fields.setdefault(match.group(1), match.group(2).strip())
        return fields

    def allocated_nodes(self, job_id: int, timeout_s: float = 60.0) -> list[str]:
        """The nodes Slurm allocated to ``job_id``, waiting (bounded) for the allocation."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fields = self.job(job_id)
            if fields.get("JobState") in ("CONFIGURING", "RUNNING") and \
                    fields.get("NodeList", "(null)") != "(null)":
                return expand_hostlist(fields["NodeList"])
            if fields.get("JobState") in ("FAILED", "CANCELLED", "NODE_FAIL", "TIMEOUT"):
                raise SlurmError(f"job {job_id} ended {fields.get('JobState')} "
                                 f"({fields.get('Reason')})")
            time.sleep(0.2)
        raise SlurmError(f"job {job_id} got no nodes within {timeout_s:.0f} s: "
                         f"{self.job(job_id)}\n{self.log_tail()}")

    def queue(self) -> list[tuple[int, str, str]]:
        """(job id, state, nodelist) of every job squeue lists."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%N").stdout
        rows = []
        for line in out.splitlines():
            job, state, nodes = line.split("|")
            rows.append((int(job), state, nodes))
        return rows
