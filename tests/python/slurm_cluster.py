"""A real one-node Slurm cluster for tests: munged, slurmctld and slurmd as child processes of the test.

``SlurmCluster(root).start()`` writes a munge key, a ``slurm.conf`` and a ``gres.conf`` under ``root``,
starts ``munged -F``, ``slurmctld -D`` and ``slurmd -D`` on loopback ports and waits until the node is
idle; ``stop()`` ends them. The node declares ``gpus`` GPUs that are character devices made with
``mknod`` (the null device's numbers): Slurm hands them out with ``--gres=gpu:N`` and sets
``CUDA_VISIBLE_DEVICES``, but there is no GPU behind them. ``env`` is the environment for Slurm's
commands (``sbatch``, ``squeue``, ``scontrol``): it names the cluster's ``slurm.conf``.

``SlurmUnavailable`` says why the daemons cannot start on this machine (not installed, not root, a
daemon that exits or never reports the node idle); tests skip with that reason.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from typing import Optional

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")


class SlurmUnavailable(RuntimeError):
    """The daemons cannot run here; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    for folder in (None, "/usr/sbin", "/sbin"):
        found = shutil.which(name, path=folder) if folder else shutil.which(name)
        if found:
            return found
    raise SlurmUnavailable(f"{name} is not installed (Debian: apt-get install --no-install-recommends slurm-wlm munge)")


class SlurmCluster:
    """One node, ``localhost``, with ``cpus`` CPUs and ``gpus`` fake GPUs, all state under ``root``."""

    def __init__(self, root: pathlib.Path, cpus: int = 2, gpus: int = 2) -> None:
        self.root = pathlib.Path(root).resolve()
        self.cpus = cpus
        self.gpus = gpus
        self.conf = self.root / "etc" / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.munge_dir: Optional[pathlib.Path] = None

    # ---- setup ----------------------------------------------------------------------------------------

    def _munge(self) -> pathlib.Path:
        keydir = self.root / "munge-key"
        keydir.mkdir(mode=0o700)
        key = keydir / "munge.key"
        subprocess.run([_tool("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
        # munged wants every folder above its socket searchable by all (0755); a test's temporary folder
        # is often private, so the socket gets a short-lived folder of its own under the system's.
        rundir = pathlib.Path(tempfile.mkdtemp(prefix="mlops-munge-"))
        rundir.chmod(0o755)
        self.munge_dir = rundir
        socket_path = rundir / "munge.socket"
        self._spawn("munged", [_tool("munged"), "-F", f"--socket={socket_path}", f"--key-file={key}",
                               f"--pid-file={rundir / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
                               f"--seed-file={keydir / 'munged.seed'}"])
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            self._check_alive("munged")
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"munged made no socket within 10 s:\n{self.log_tail('munged.log')}")
            time.sleep(0.05)
        return socket_path

    def _fake_gpus(self) -> list[pathlib.Path]:
        devdir = self.root / "dev"
        devdir.mkdir()
        devices = []
        for i in range(self.gpus):
            path = devdir / f"gpu{i}"
            try:
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            except PermissionError as e:
                raise SlurmUnavailable(f"cannot make the fake GPU device {path} with mknod: {e}") from None
            devices.append(path)
        return devices

    def _write_conf(self, munge_socket: pathlib.Path, devices: list[pathlib.Path]) -> None:
        etc = self.root / "etc"
        etc.mkdir(exist_ok=True)
        for d in ("state", "spool"):
            (self.root / d).mkdir(exist_ok=True)
        # The daemons cannot bind port 0 and report it: ports that were free a moment ago, and new ones when
        # something took one in between (start() retries).
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        r = self.root
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text("\n".join([
            "ClusterName=mlops-test",
            "SlurmctldHost=localhost(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={r / 'jobcomp.txt'}",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "MinJobAge=600",
            "GresTypes=gpu",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus}{gres} State=UNKNOWN",
            "PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        lines = [f"NodeName=localhost Name=gpu File={d}" for d in devices]
        (etc / "gres.conf").write_text("\n".join(lines) + "\n")

    # ---- processes ------------------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, cwd=self.root)
        out.close()

    def _check_alive(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is not None:
            raise SlurmUnavailable(f"{name} exited with {p.returncode}:\n{self.log_tail(name + '.out')}"
                                   f"{self.log_tail(name + '.log')}")

    def log_tail(self, name: str, n: int = 3000) -> str:
        try:
            return (self.root / name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> "SlurmCluster":
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd runs jobs as their user and must be started as root")
        for tool in DAEMONS:
            _tool(tool)
        try:
            munge_socket = self._munge()
            devices = self._fake_gpus()
            for attempt in range(5):
                self._write_conf(munge_socket, devices)
                self._spawn("slurmctld", [_tool("slurmctld"), "-D", "-c", "-f", str(self.conf)])
                self._spawn("slurmd", [_tool("slurmd"), "-D", "-N", "localhost", "-f", str(self.conf)])
                try:
                    self._wait_idle(timeout)
                    break
                except SlurmUnavailable:
                    logs = "".join(self.log_tail(f"{d}.{ext}") for d in ("slurmctld", "slurmd") for ext in ("out", "log"))
                    if attempt == 4 or "Address already in use" not in logs:
                        raise
                    self._end("slurmd", "slurmctld")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for name in self.procs:
                self._check_alive(name)
            r = subprocess.run([_tool("sinfo"), "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True)
            state = r.stdout.strip() or r.stderr.strip()
            if r.returncode == 0 and state == "idle":
                return
            time.sleep(0.2)
        raise SlurmUnavailable(f"the node was not idle within {timeout} s (last state: {state!r}):\n"
                               f"{self.log_tail('slurmctld.log')}\n{self.log_tail('slurmd.log')}")

    def stop(self) -> None:
        self._end("slurmd", "slurmctld", "munged")
        if self.munge_dir is not None:
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            self.munge_dir = None

    def _end(self, *names: str) -> None:
        for name in names:
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)

    # ---- commands -------------------------------------------------------------------------------------

    def run(self, *cmd: str, env: Optional[dict] = None, check: bool = True, cwd=None) -> str:
        """Run a Slurm command (or any command) with this cluster's configuration; its standard output."""
        r = subprocess.run(list(cmd), env={**self.env, **(env or {})}, capture_output=True, text=True, cwd=cwd)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def jobs(self, job_id: str) -> list[dict]:
        """Every job record of ``job_id`` (one per array task) as ``scontrol show job`` reports it."""
        out = self.run(_tool("scontrol"), "-o", "show", "job", job_id)
        records = []
        for line in out.splitlines():
            fields = {}
            for part in line.split():
                key, sep, value = part.partition("=")
                if sep:
                    fields[key] = value
            if fields:
                records.append(fields)
        return records

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
