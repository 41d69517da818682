"""A team's stack on this machine, on loopback: PostgreSQL as MLflow's backend store, an MLflow
tracking server that proxies every artifact to a folder (standing in for S3 or GCS, so clients
never write the artifact store themselves), and a Prefect server.

`python -m kdflow.services up` (what `make services` runs) starts what is not running yet and
prints the variables to export; `down` stops them; `env` prints the variables again. State,
logs and the artifact folder live in `.services/` of the project. Nothing here is needed by
the embedded defaults: `make run` uses SQLite and an ephemeral Prefect API.

PostgreSQL refuses to run as root; as root, its commands run as the `postgres` user that
Debian's `postgresql` package creates.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.io import atomic_path
from kdflow.settings import QUIET


class ServiceError(KdflowError):
    """A service could not be started (what is missing, and which log says why)."""


@dataclass(frozen=True)
class Stack:
    """Where one stack lives and listens."""

    home: Path  # <project>/.services
    postgres_port: int = 55432
    mlflow_port: int = 5011
    prefect_port: int = 4211

    @property
    def database_uri(self) -> str:
        return f"postgresql+psycopg://kdflow@127.0.0.1:{self.postgres_port}/mlflow"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    def env(self) -> dict[str, str]:
        """What a client exports to use this stack."""
        return {
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.mlflow_port}",
            "PREFECT_API_URL": f"http://127.0.0.1:{self.prefect_port}/api",
        }

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.home / f"{name}.pid"


def _postgres_tool(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else in Debian's versioned folder."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    found = shutil.which(name) or (str(debian[-1]) if debian else None)  # the newest version installed
    if found is None:
        raise ServiceError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run its commands as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait(url: str, what: str, log: Path, process: subprocess.Popen | None, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{what} exited with status {process.returncode}; see {log}")
        time.sleep(0.5)
    raise ServiceError(f"{what} did not answer at {url} within {seconds:.0f} s; see {log}")


def _password(stack: Stack) -> str:
    """The database password of this stack, made once and kept in a file only its owner reads."""
    path = stack.home / "postgres.password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.chmod(0o600)  # before the secret is in it
            tmp.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def start_postgres(stack: Stack) -> None:
    """A private cluster in `.services/postgres`: TCP on 127.0.0.1 only (no Unix socket), a
    password for its one user `kdflow` (scram-sha-256), and the `mlflow` database."""
    data = stack.home / "postgres"
    password = _password(stack)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        pwfile = stack.home / ".initdb-password"
        pwfile.touch(mode=0o600)
        pwfile.write_text(password)
        if os.geteuid() == 0:  # initdb runs as postgres: it owns its folder and reads the password
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            subprocess.run(
                _as_postgres([_postgres_tool("initdb"), "-D", str(data), "-U", "kdflow", "--auth=scram-sha-256",
                              f"--pwfile={pwfile}", "-E", "UTF8"]),
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
    ready = subprocess.run(_as_postgres([_postgres_tool("pg_ctl"), "-D", str(data), "status"]), capture_output=True)
    if ready.returncode != 0:
        log = stack.log("postgres")
        log.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(log.parent, "postgres", "postgres")
        # pg_ctl hands -o to a shell: nothing from the environment or a path goes in it.
        options = f"-p {int(stack.postgres_port)} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        started = subprocess.run(
            _as_postgres([_postgres_tool("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "120", "start"]),
            capture_output=True, text=True,
        )  # fmt: skip
        if started.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start: {started.stdout.strip()} {started.stderr.strip()}; see {log}")
    import psycopg

    # autocommit: CREATE DATABASE cannot run in a transaction
    try:
        connection = psycopg.connect(
            host="127.0.0.1", port=stack.postgres_port, user="kdflow", password=password, dbname="postgres", autocommit=True
        )
    except psycopg.OperationalError as error:
        raise ServiceError(f"cannot connect to PostgreSQL on 127.0.0.1:{stack.postgres_port}: {error}") from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'mlflow'")
            if cursor.fetchone() is None:
                cursor.execute("CREATE DATABASE mlflow")
    finally:
        connection.close()


def _ours(stack: Stack, name: str) -> int | None:
    """The pid of this stack's `name` server if it is alive and still that program, else None
    (a pidfile left by a reboot may name another process by now)."""
    pidfile = stack.pidfile(name)
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if name in cmdline else None


def _claim(stack: Stack, name: str, url: str, port: int) -> bool:
    """True when this stack's `name` server already answers; an error when something else does."""
    if not _healthy(url):
        return False
    if _ours(stack, name) is None:
        raise ServiceError(f"127.0.0.1:{port} answers but is not this project's {name} server; stop it or free the port")
    return True


def _launch(stack: Stack, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = stack.log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    stack.pidfile(name).write_text(str(process.pid))
    return process


def start_mlflow(stack: Stack) -> None:
    """`mlflow server` on the PostgreSQL store, serving artifacts from `.services/artifacts`
    (clients send and fetch them through the server: `mlflow-artifacts:/` URIs)."""
    url = f"http://127.0.0.1:{stack.mlflow_port}/health"
    if _claim(stack, "mlflow", url, stack.mlflow_port):
        return
    stack.artifacts.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--artifacts-destination", str(stack.artifacts), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(stack.mlflow_port), "--workers", "2",
    ]  # fmt: skip
    # The store's URI, password included, through the environment: never on a command line that `ps` shows.
    store = {"MLFLOW_BACKEND_STORE_URI": stack.database_uri.replace("kdflow@", f"kdflow:{_password(stack)}@")}
    process = _launch(stack, "mlflow", command, {**os.environ, **QUIET, **store})
    _wait(url, "the MLflow server", stack.log("mlflow"), process)


def start_prefect(stack: Stack) -> None:
    """`prefect server start` with its own SQLite database under `.services/prefect`."""
    url = f"http://127.0.0.1:{stack.prefect_port}/api/health"
    if _claim(stack, "prefect", url, stack.prefect_port):
        return
    env = {**os.environ, **QUIET, "PREFECT_HOME": str(stack.home / "prefect")}
    env.pop("PREFECT_API_URL", None)  # the server is not a client of another one
    command = [
        str(Path(sys.executable).with_name("prefect")),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(stack.prefect_port),
    ]
    process = _launch(stack, "prefect", command, env)
    _wait(url, "the Prefect server", stack.log("prefect"), process)


def up(stack: Stack) -> dict[str, str]:
    """Start whatever of the stack is not running; the variables a client exports."""
    stack.home.mkdir(parents=True, exist_ok=True)
    start_postgres(stack)
    start_mlflow(stack)
    start_prefect(stack)
    (stack.home / "env").write_text("".join(f"export {k}={v}\n" for k, v in stack.env().items()))
    return stack.env()


def down(stack: Stack) -> list[str]:
    """Stop the servers this stack started (their whole process groups) and PostgreSQL; what
    could not be stopped, said (empty when everything stopped)."""
    problems = []
    for name in ("prefect", "mlflow"):
        pid = _ours(stack, name)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # gone meanwhile
            except PermissionError:
                problems.append(f"the {name} server (pid {pid}) belongs to another user")
        stack.pidfile(name).unlink(missing_ok=True)
    data = stack.home / "postgres"
    if (data / "PG_VERSION").exists():
        stopped = subprocess.run(
            _as_postgres([_postgres_tool("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True, text=True
        )
        if stopped.returncode != 0 and "Is server running?" not in stopped.stderr:
            problems.append(f"PostgreSQL: {stopped.stderr.strip()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    from kdflow.settings import find_root

    parser = argparse.ArgumentParser(prog="python -m kdflow.services", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "env"))
    args = parser.parse_args(argv)
    stack = Stack(find_root() / ".services")
    try:
        if args.action == "down":
            problems = down(stack)
            print("\n".join(f"kdflow services: could not stop {p}" for p in problems) or "stopped the team stack")
            return 1 if problems else 0
        env = up(stack) if args.action == "up" else stack.env()
    except (ServiceError, subprocess.CalledProcessError, OSError) as error:
        detail = getattr(error, "stderr", "") or ""
        print(f"kdflow services: {error} {detail}".strip(), file=sys.stderr)
        return 1
    if args.action == "up":
        print(f"PostgreSQL on 127.0.0.1:{stack.postgres_port}, artifacts in {stack.artifacts}; logs in {stack.home / 'logs'}")
        print("# export these (or `source .services/env`):")
    print("".join(f"export {k}={v}\n" for k, v in env.items()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
