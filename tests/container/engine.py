"""A Docker engine of the tests' own: Debian's ``dockerd`` with its own data root, socket and pidfile.

Nothing is shared with another engine on the machine: the daemon listens on a socket under the
cache directory, keeps its images in ``<cache>/data`` (kept between runs, so the stand-in base
image and the layers of earlier builds are reused), its runtime state in a fresh temporary
directory, runs with ``--iptables=false --bridge=none`` (no default network, no firewall rules;
containers use ``--network host`` or a network the test creates and removes), and is stopped by
its pid when the session ends. One session at a time uses a cache directory (a lock file). The
storage driver is ``overlay2`` where the data root allows it, else ``vfs`` (see
:meth:`Engine._probe_storage_driver`; ``ODOOOPS_REHEARSAL_STORAGE_DRIVER`` forces one).

No image registry is reachable from these machines, so the project's ``FROM`` image is stood in
(see :func:`ensure_base_image`): a Debian bookworm root file system (``debootstrap``) with
Python 3.11, laid out like the official ``python:*-slim`` image (``/usr/local/bin/python``, pip),
and tagged with the exact name of the ``FROM`` line, so the project's Dockerfile builds unmodified.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# /usr/local/bin/docker on these machines may be another client: always the one from docker.io.
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
DEBIAN_PACKAGES = ("docker.io", "debootstrap")
DEFAULT_CACHE = Path.home() / ".cache" / "odooops-rehearsal"
CACHE_VARIABLE = "ODOOOPS_REHEARSAL_CACHE"
DRIVER_VARIABLE = "ODOOOPS_REHEARSAL_STORAGE_DRIVER"
# An engine that already runs (CI on GitHub: unix:///var/run/docker.sock, with Docker Hub reachable):
# used as it is, and the real base image is pulled instead of stood in.
EXTERNAL_VARIABLE = "ODOOOPS_REHEARSAL_DOCKER_HOST"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The official slim images have exactly this layout; the stand-in reproduces it on Debian's Python.
STAND_IN_DOCKERFILE = """\
FROM {rootfs}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
RUN python3 -m venv /usr/local && /usr/local/bin/python -c "import sys; assert sys.prefix == '/usr/local'"
ENV LANG=C.UTF-8
CMD ["python3"]
"""


class EngineUnavailable(Exception):
    """Docker cannot run here; the message says why (the rehearsal is then skipped with it)."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or DEFAULT_CACHE)


def ensure_debian_packages() -> None:
    """``docker.io`` and ``debootstrap`` from the configured Debian mirror, when missing."""
    needed = (DOCKER,) if os.environ.get(EXTERNAL_VARIABLE) else (DOCKER, DOCKERD, DEBOOTSTRAP)
    missing = [path for path in needed if not Path(path).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise EngineUnavailable(f"{', '.join(missing)} missing and not root: cannot apt-get install them")
    if shutil.which("apt-get") is None:
        raise EngineUnavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=600"]  # another apt-get may be running
    for command in (
        ["apt-get", *wait_for_lock, "update", "-qq"],
        ["apt-get", *wait_for_lock, "install", "-y", "-qq", *DEBIAN_PACKAGES],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise EngineUnavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")


@dataclass
class DockerResult:
    returncode: int
    stdout: str
    stderr: str


class Engine:
    """One ``dockerd`` started by the tests and stopped by them."""

    def __init__(self, cache: Path, external_host: str | None = None) -> None:
        self.cache = cache
        self.data_root = cache / "data"
        self.external = bool(external_host)
        self.socket = Path(external_host.removeprefix("unix://")) if external_host else cache / "docker.sock"
        self.pidfile = cache / "dockerd.pid"
        self.log = cache / "dockerd.log"
        self.host = external_host or f"unix://{self.socket}"
        self._exec_root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        self.storage_driver = "vfs"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, lock_timeout: float = 1800) -> Engine:
        if self.external:
            self.cache.mkdir(parents=True, exist_ok=True)
            self._acquire_lock(lock_timeout)
            version = self.docker("version", timeout=60)
            if version.returncode != 0:
                self.stop()
                raise EngineUnavailable(
                    f"the engine at {self.host} does not answer: {version.stderr.strip()}"
                )
            self.storage_driver = self.must("info", "--format", "{{.Driver}}").strip()
            return self
        if os.geteuid() != 0:
            raise EngineUnavailable(f"dockerd needs root (this session runs as uid {os.geteuid()})")
        self.cache.mkdir(parents=True, exist_ok=True)
        self._acquire_lock(lock_timeout)
        try:
            self._stop_leftover()
            self.storage_driver = os.environ.get(DRIVER_VARIABLE) or self._probe_storage_driver()
            self._exec_root = Path(tempfile.mkdtemp(prefix="odooops-dockerd-"))
            self.socket.unlink(missing_ok=True)
            command = [
                DOCKERD,
                "--data-root", str(self.data_root),
                "--exec-root", str(self._exec_root / "exec"),
                "--host", self.host,
                "--pidfile", str(self.pidfile),
                "--storage-driver", self.storage_driver,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ]  # fmt: skip
            with open(self.log, "ab") as log:
                self._process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self._wait_ready(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the daemon by its pid (SIGTERM, then SIGKILL), remove its runtime state, unlock."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._exec_root is not None:
            shutil.rmtree(self._exec_root, ignore_errors=True)
            self._exec_root = None
        if not self.external:
            self.socket.unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _acquire_lock(self, timeout: float) -> None:
        fd = os.open(self.cache / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(
                        f"{self.cache} stayed locked by another session for {timeout:g}s"
                    ) from None
                time.sleep(1)
        self._lock = fd

    def _probe_storage_driver(self) -> str:
        """``overlay2`` when the data root's file system can hold an overlay mount, else ``vfs``.

        ``vfs`` works everywhere but copies the whole image for each container: 13-20 s per
        ``docker run`` of this image on a loaded 2-core machine, against about 1 s with overlay2
        (BENCHMARKS.md). A data root on overlayfs itself (Docker in Docker) cannot, hence the probe.
        """
        probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=self.cache))
        try:
            for name in ("lower", "upper", "work", "merged"):
                (probe / name).mkdir()
            options = f"lowerdir={probe / 'lower'},upperdir={probe / 'upper'},workdir={probe / 'work'}"
            mounted = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", options, str(probe / "merged")],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if mounted.returncode != 0:
                return "vfs"
            subprocess.run(["umount", str(probe / "merged")], capture_output=True, timeout=30, check=False)
            return "overlay2"
        finally:
            shutil.rmtree(probe, ignore_errors=True)

    def _stop_leftover(self) -> None:
        """A daemon of a crashed earlier session (its pidfile, our data root): stop it by its pid."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if Path(cmdline[0].decode()).name == "dockerd" and str(self.data_root).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise EngineUnavailable(f"dockerd exited with {self._process.returncode}: {self._log_tail()}")
            if self.socket.exists() and self.docker("version", timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        raise EngineUnavailable(f"dockerd was not ready within {timeout:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    # -- the client -----------------------------------------------------------------------------
    @property
    def client_env(self) -> dict[str, str]:
        """The environment a ``docker`` client needs to talk to this daemon (and nothing else)."""
        return {"DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def command(self, *args: str) -> list[str]:
        return [DOCKER, "--host", self.host, *args]

    def docker(
        self, *args: str, timeout: float = 600, input_text: str | None = None, cwd: Path | None = None
    ) -> DockerResult:
        done = subprocess.run(
            self.command(*args),
            env=self.client_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input_text,
            cwd=cwd,
        )
        return DockerResult(done.returncode, done.stdout, done.stderr)

    def must(self, *args: str, timeout: float = 600, cwd: Path | None = None) -> str:
        result = self.docker(*args, timeout=timeout, cwd=cwd)
        if result.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, timeout=60).returncode == 0

    def containers(self, label: str) -> list[str]:
        out = self.must("ps", "--all", "--quiet", "--filter", f"label={label}", timeout=60)
        return out.split()

    def remove_containers(self, label: str) -> None:
        ids = self.containers(label)
        if ids:
            self.docker("rm", "--force", *ids, timeout=120)


# -- the stand-in base image ------------------------------------------------------------------


def from_image(dockerfile: Path = REPO / "Dockerfile") -> str:
    """The image name of the Dockerfile's (first) ``FROM`` line."""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"no FROM line in {dockerfile}")


def debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 sources, else sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return DEFAULT_MIRROR


def ensure_base_image(engine: Engine, name: str, log: list[str]) -> bool:
    """Tag ``name`` with a stand-in of the official image unless the engine has it. True if built.

    An external engine (with a registry in reach) pulls the real image instead.
    """
    if engine.has_image(name):
        return False
    if engine.external:
        log.append(engine.must("pull", "--quiet", name, timeout=900))
        return True
    rootfs_image = "odooops-rehearsal/bookworm-python:rootfs"
    if not engine.has_image(rootfs_image):
        _import_rootfs(engine, rootfs_image, log)
    with tempfile.TemporaryDirectory(prefix="odooops-base-") as context:
        directory = Path(context)
        (directory / "Dockerfile").write_text(STAND_IN_DOCKERFILE.format(rootfs=rootfs_image))
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", directory / "ca-certificates.crt")
        (directory / "pip.conf").write_text(
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndisable-pip-version-check = true\n"
        )
        log.append(engine.must("build", "--network", "host", "-t", name, str(directory), timeout=900))
    return True


def _import_rootfs(engine: Engine, image: str, log: list[str]) -> None:
    """``docker import`` of a debootstrapped bookworm with Python; the tarball is kept in the cache."""
    tarball = engine.cache / "bookworm-python-rootfs.tar"
    if not tarball.exists():
        _debootstrap(tarball, log)
    with open(tarball, "rb") as source:
        imported = subprocess.run(
            engine.command("import", "-", image),
            stdin=source,
            env=engine.client_env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if imported.returncode != 0:
        raise RuntimeError(f"docker import failed: {imported.stderr[-2000:]}")


def _debootstrap(tarball: Path, log: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="odooops-rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        command = [
            DEBOOTSTRAP,
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            debian_mirror(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        log.append(done.stdout[-2000:])
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({done.returncode}): {done.stderr[-2000:]}")
        # apt's lists and downloaded packages are not part of an image.
        for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=900)
        partial.rename(tarball)


def image_sizes(engine: Engine, image: str) -> tuple[int, int]:
    """(uncompressed bytes as the engine reports them, ``docker save | gzip -c | wc -c``)."""
    uncompressed = int(engine.must("image", "inspect", "--format", "{{.Size}}", image).strip())
    save = subprocess.Popen(engine.command("save", image), stdout=subprocess.PIPE, env=engine.client_env)
    gzip = subprocess.Popen(["gzip", "-c"], stdin=save.stdout, stdout=subprocess.PIPE)
    assert save.stdout is not None
    assert gzip.stdout is not None
    save.stdout.close()
    compressed = 0
    for chunk in iter(lambda: gzip.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
        compressed += len(chunk)
    gzip.wait()
    save.wait()
    return uncompressed, compressed


def layer_sizes(engine: Engine, image: str) -> list[tuple[int, str]]:
    out = engine.must("history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image)
    rows = []
    for line in out.splitlines():
        size, _, created_by = line.partition("\t")
        rows.append((_parse_size(size), created_by))
    return rows


def _parse_size(text: str) -> int:
    match = re.match(r"([\d.]+)\s*([kMG]?B)", text.strip())
    if not match:
        return 0
    factor = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}[match.group(2)]
    return int(float(match.group(1)) * factor)
