"""Run a real Apache Kafka 4.x broker (KRaft) from Maven Central jars with plain ``java``.

No Docker, no tarball: ``deploy/kafka/pom.xml`` pins the broker jars, :func:`kafka_classpath`
resolves them once into a cache, and :class:`LocalKafka` / :class:`LocalKafkaCluster` start
``java -cp <jars> kafka.Kafka server.properties`` as child processes.
Background and sources: /work/shared/infra/kafka-local.md.

Process-lifetime guarantees (a broker must never outlive the Python process that started it):

* every JVM runs in its own process group (so Ctrl-C in a terminal does not hit it half-way, and
  we can signal the whole group);
* an :mod:`atexit` hook SIGKILLs every broker that is still running and removes temporary data
  directories, which covers normal interpreter exit, ``sys.exit`` and uncaught exceptions;
* on Linux the JVM is additionally started with ``PR_SET_PDEATHSIG=SIGKILL`` when it is spawned from
  the main thread, so even a SIGKILL of the Python parent (where atexit cannot run) takes the
  broker with it. (PDEATHSIG fires when the *spawning thread* exits, so it is not used for spawns
  from other threads; the atexit hook still covers those.)

Security (opt-in, off by default): ``LocalKafka(scram_users={"alice": "secret"})`` adds a
SASL_PLAINTEXT listener with SASL/SCRAM (SCRAM-SHA-256 and -512; the users are written at format
time), and ``tls=True`` a TLS listener (SASL_SSL with SCRAM users, else SSL) with a throwaway CA
(:func:`make_local_tls`). The PLAINTEXT listener stays for inter-broker traffic, readiness probes
and the controller.

CLI::

    python -m deploy.localstack.kafka run [--port 9092] [--data DIR] [--auto-create-topics]
        [--scram-user NAME=PASSWORD ...] [--tls]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
POM_PATH = KAFKA_DEPLOY_DIR / "pom.xml"
LOG4J2_CONFIG = KAFKA_DEPLOY_DIR / "log4j2.properties"

# A condition-wait, not a sleep: a JVM cold start on a loaded 2-core machine (CI, or parallel
# test sessions) has taken over a minute; giving up early turns a slow start into a skipped suite.
DEFAULT_STARTUP_TIMEOUT = 180.0
DEFAULT_STOP_TIMEOUT = 30.0

# JVM flags of bin/kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS), see doc §1.2.
JVM_PERFORMANCE_OPTS = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]


class KafkaLaunchError(RuntimeError):
    """The broker could not be resolved, formatted or started (message has the log tail)."""


# --------------------------------------------------------------------------------------------
# jar resolution
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$TAPER_CACHE_DIR`` or ``~/.cache/taper-backend``."""
    env = os.environ.get("TAPER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "taper-backend"


def kafka_classpath(pom: Path = POM_PATH) -> str:
    """Resolve the broker jars once (Maven) and return a java classpath ``"<dir>/*"``.

    The cache directory is keyed by a hash of ``pom.xml``; a ``.complete`` marker is written only
    after ``mvn`` succeeded, and an ``fcntl`` lock makes concurrent callers (pytest-xdist workers,
    parallel shells) wait for one resolver instead of racing.
    """
    pom = Path(pom).resolve()
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    lib_dir = root / f"kafka-libs-{digest}"
    marker = lib_dir / ".complete"
    if marker.exists():
        return f"{lib_dir}/*"
    with open(root / f"kafka-libs-{digest}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if marker.exists():  # another process finished while we waited
                return f"{lib_dir}/*"
            mvn = shutil.which("mvn")
            if mvn is None:
                raise KafkaLaunchError(
                    "Maven (`mvn`) is not on PATH; it is needed once to resolve the Kafka jars "
                    f"from {pom} (apt-get install maven)"
                )
            if lib_dir.exists():  # leftover of an interrupted run
                shutil.rmtree(lib_dir)
            lib_dir.mkdir(parents=True)
            cmd = [
                mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={lib_dir}", "-DincludeScope=runtime",
            ]  # fmt: skip
            log.info("resolving Kafka jars: %s", " ".join(cmd))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0 or not any(lib_dir.glob("kafka_2.13-*.jar")):
                out = (proc.stdout + proc.stderr)[-4000:]
                shutil.rmtree(lib_dir, ignore_errors=True)
                raise KafkaLaunchError(
                    f"mvn failed to resolve Kafka jars (rc={proc.returncode}):\n{out}"
                )
            marker.write_text(f"{pom}\n{digest}\n")
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return f"{lib_dir}/*"


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaLaunchError("`java` (17+) is not on PATH and JAVA_HOME is not set")
    return java


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (small race window; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (all sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def random_cluster_id() -> str:
    """22-char URL-safe base64 UUID, the format of ``StorageTool random-uuid``.

    Like Kafka's ``Uuid.randomUuid()``, never starts with ``-`` (the CLI would read it as an
    option: ``--cluster-id: expected one argument``).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def tail(path: Path, max_bytes: int = 6000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """preexec_fn that makes the child die with SIGKILL when the spawning thread dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def _preexec() -> None:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:  # parent already gone between fork and prctl
            os._exit(1)

    return _preexec


def spawn(
    cmd: list[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),  # only prctl(): no locks taken in the child
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
        )


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the child's process group (falls back to the child itself)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def terminate(proc: subprocess.Popen[Any], timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
    """SIGTERM, wait ``timeout`` s, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %s ignored SIGTERM for %.0fs; sending SIGKILL", proc.pid, timeout)
            signal_group(proc, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def hard_kill(proc: subprocess.Popen[Any]) -> int | None:
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    return proc.returncode


# Everything still alive at interpreter exit gets killed here (see module docstring).
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _atexit_cleanup() -> None:
    for obj in list(_LIVE):
        with contextlib.suppress(Exception):
            obj._atexit()


atexit.register(_atexit_cleanup)


def _read_properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def _listener_port(listeners: str, name: str) -> int | None:
    for item in listeners.split(","):
        if item.startswith(f"{name}://"):
            return int(item.rsplit(":", 1)[1])
    return None


def _write_properties(path: Path, props: Mapping[str, object]) -> None:
    lines = ["# generated by deploy/localstack/kafka.py"]
    for k, v in props.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        lines.append(f"{k}={v}")
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# one JVM
# --------------------------------------------------------------------------------------------


class _KafkaNode:
    """One broker+controller JVM: config file, storage format, process."""

    def __init__(
        self,
        *,
        node_id: int,
        port: int,
        controller_port: int,
        data_dir: Path,
        props: dict[str, object],
        heap: tuple[str, str],
        format_args: Iterable[str] = (),
    ) -> None:
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.data_dir = data_dir
        self.props = props
        self.heap = heap
        self.format_args = list(format_args)  # e.g. --add-scram credentials
        self.proc: subprocess.Popen[bytes] | None = None

    # paths
    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def stdout_log(self) -> Path:
        return self.logs_dir / "stdout.log"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def is_formatted(self) -> bool:
        return (self.log_dirs / "meta.properties").exists()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def jvm_opts(self, heap: tuple[str, str]) -> list[str]:
        return [
            f"-Xms{heap[0]}", f"-Xmx{heap[1]}", *JVM_PERFORMANCE_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
        ]  # fmt: skip

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        props = dict(self.props)
        props["node.id"] = self.node_id
        props["log.dirs"] = str(self.log_dirs)
        _write_properties(self.config_path, props)

    def format_cmd(self, classpath: str, cluster_id: str, standalone: bool) -> list[str]:
        cmd = [
            java_executable(), *self.jvm_opts(("512m", "512m")), "-cp", classpath,
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_path),
        ]  # fmt: skip
        if standalone:
            cmd.append("--standalone")
        cmd.extend(self.format_args)
        return cmd

    def start_process(self, classpath: str) -> None:
        if self.is_running():
            return
        gc_log = self.logs_dir / "kafkaServer-gc.log"
        cmd = [
            java_executable(), *self.jvm_opts(self.heap),
            f"-Xlog:gc*:file={gc_log}:time,tags:filecount=2,filesize=20M",
            "-cp", classpath, "kafka.Kafka", str(self.config_path),
        ]  # fmt: skip
        with open(self.stdout_log, "ab") as f:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            f.write(f"\n==== {stamp} starting node {self.node_id}\n".encode())
        self.proc = spawn(cmd, self.stdout_log, cwd=self.data_dir)
        log.info(
            "kafka node %s started (pid %s) on %s", self.node_id, self.proc.pid, self.bootstrap
        )

    def log_tail(self) -> str:
        return (
            f"--- {self.stdout_log} (tail) ---\n{tail(self.stdout_log, 3000)}\n"
            f"--- {self.server_log} (tail) ---\n{tail(self.server_log, 5000)}"
        )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None:
            hard_kill(self.proc)


def _run_formats(
    nodes: Iterable[_KafkaNode], classpath: str, cluster_id: str, standalone: bool
) -> None:
    """Format all unformatted nodes in parallel (each StorageTool is a ~2 s JVM)."""
    procs = []
    for node in nodes:
        if node.is_formatted():
            continue
        node.write_config()
        path = node.logs_dir / "format.log"
        procs.append((node, path, spawn(node.format_cmd(classpath, cluster_id, standalone), path)))
    errors = []
    for node, path, p in procs:
        try:
            rc = p.wait(120)
        except subprocess.TimeoutExpired:
            hard_kill(p)
            rc = -1
        if rc != 0:
            errors.append(f"node {node.node_id}: StorageTool format rc={rc}\n{tail(path, 4000)}")
    if errors:
        raise KafkaLaunchError("formatting Kafka storage failed:\n" + "\n".join(errors))


def _admin(bootstrap: str | list[str], timeout_ms: int = 3000) -> Any:
    from kafka import KafkaAdminClient  # imported lazily: only needed for readiness

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="taper-localstack-probe",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        reconnect_backoff_ms=100,
        reconnect_backoff_max_ms=500,
    )


@contextlib.contextmanager
def _quiet_kafka_client_logs() -> Iterator[None]:
    """Readiness probes expect ECONNREFUSED; keep kafka-python from logging each one."""
    logger = logging.getLogger("kafka")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def _broker_ids(bootstrap: str | list[str]) -> set[int]:
    """IDs of the live (registered, unfenced) brokers according to cluster metadata."""
    with _quiet_kafka_client_logs():
        return _broker_ids_unquiet(bootstrap)


def _broker_ids_unquiet(bootstrap: str | list[str]) -> set[int]:
    admin = _admin(bootstrap)
    try:
        admin.list_topics()  # the real round trip the clients do
        brokers = admin.describe_cluster()["brokers"]
        # DescribeCluster also lists fenced (dead / not yet caught-up) brokers; skip those.
        return {int(b["broker_id"]) for b in brokers if not b.get("is_fenced")}
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def _wait_ready(
    nodes: list[_KafkaNode], bootstrap: list[str], want_ids: set[int], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    last_err: str = "no attempt made"
    while True:
        for node in nodes:
            if not node.is_running():
                rc = node.proc.returncode if node.proc else None
                raise KafkaLaunchError(
                    f"{what}: kafka node {node.node_id} exited early (rc={rc})\n{node.log_tail()}"
                )
        try:
            ids = _broker_ids(bootstrap)
            if want_ids <= ids:
                return
            last_err = f"brokers in metadata: {sorted(ids)}, want {sorted(want_ids)}"
        except Exception as exc:
            last_err = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            tails = "\n".join(n.log_tail() for n in nodes)
            raise KafkaLaunchError(
                f"{what}: not ready within {timeout:.0f}s (last probe: {last_err})\n{tails}"
            )
        time.sleep(0.5)


def _common_props(auto_create_topics: bool) -> dict[str, object]:
    return {
        "process.roles": "broker,controller",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "num.recovery.threads.per.data.dir": 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": auto_create_topics,
        # heap is small (<=512m): the log cleaner's dedupe buffer (128 MiB default) is on-heap.
        "log.cleaner.dedupe.buffer.size": 33554432,
        # Faster fencing (defaults 2000/9000 ms): a killed node is fenced after ~4 s, and a
        # restarted node does not wait ~9 s for its previous registration's session to expire.
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 4000,
    }


# --------------------------------------------------------------------------------------------
# security: SCRAM users and throwaway TLS material
# --------------------------------------------------------------------------------------------

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_LISTENER = "SASL"  # opt-in listener names (protocols SASL_PLAINTEXT, SASL_SSL or SSL)
TLS_LISTENER = "TLS"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _scram_format_args(users: Mapping[str, str]) -> list[str]:
    """``StorageTool format --add-scram`` arguments: every user, for both mechanisms."""
    args: list[str] = []
    for name, password in users.items():
        for value in (name, password):
            if not value or any(c in value for c in '"[],=') or value != value.strip():
                raise ValueError(
                    f"SCRAM user names and passwords must be non-empty without quotes, brackets, "
                    f"commas, '=' or surrounding blanks (user {name!r})"
                )
        for mechanism in SCRAM_MECHANISMS:
            args += ["--add-scram", f'{mechanism}=[name="{name}",password="{password}"]']
    return args


@dataclass(frozen=True)
class LocalTls:
    """Throwaway TLS material (PEM) under one directory, signed by its own CA.

    ``ca_file`` is what clients trust (``KAFKA_SSL_CAFILE``); ``keystore_file`` is the broker's
    unencrypted PKCS#8 key and certificate chain (``ssl.keystore.type=PEM``); the client
    certificate and key (same CA) are for mutual TLS.
    """

    ca_file: Path
    keystore_file: Path
    client_cert_file: Path
    client_key_file: Path

    @classmethod
    def in_dir(cls, directory: Path) -> LocalTls:
        return cls(
            directory / "ca.pem",
            directory / "broker-keystore.pem",
            directory / "client-cert.pem",
            directory / "client-key.pem",
        )

    def exists(self) -> bool:
        return all(
            f.exists()
            for f in (self.ca_file, self.keystore_file, self.client_cert_file, self.client_key_file)
        )


def make_local_tls(
    directory: Path, hosts: Iterable[str] = ("127.0.0.1", "localhost"), days: int = 30
) -> LocalTls:
    """A CA, a broker certificate for ``hosts`` and a client certificate, written to ``directory``.

    Kept if already there (a kept data dir restarts with the same CA). Host names verify: the
    broker certificate names every host as a subject alternative name (IP or DNS).
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls = LocalTls.in_dir(Path(directory))
    if tls.exists():
        return tls
    Path(directory).mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def builder(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )

    def key_usage(ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=not ca,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    ca_key = new_key()
    ca_cert = (
        builder("taper local Kafka CA", ca_key, name("taper local Kafka CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: str, eku: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = new_key()
        b = (
            builder(subject, key, ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    broker_key, broker_cert = leaf(
        "taper local Kafka broker", ExtendedKeyUsageOID.SERVER_AUTH, sans
    )
    client_key, client_cert = leaf("taper-local-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def pem_key(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem_cert(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def write(path: Path, data: bytes, mode: int = 0o644) -> None:
        path.write_bytes(data)
        path.chmod(mode)

    write(tls.keystore_file, pem_key(broker_key) + pem_cert(broker_cert) + pem_cert(ca_cert), 0o600)
    write(tls.client_key_file, pem_key(client_key), 0o600)
    write(tls.client_cert_file, pem_cert(client_cert))
    write(tls.ca_file, pem_cert(ca_cert))  # last: its presence means "complete" (exists())
    return tls


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


class LocalKafka:
    """A single-node KRaft Kafka (combined broker+controller) on 127.0.0.1.

    ``port``/``controller_port`` default to free loopback ports. ``base_dir`` defaults to a new
    temp dir that is deleted on ``__exit__``/``cleanup()``/interpreter exit; a given ``base_dir``
    is kept (and reused without reformatting by a later ``start()``).
    ``stop()`` keeps the data so ``restart()`` (or ``start()``) comes back with the same topics.

    Opt-in security, on extra listeners (the PLAINTEXT one stays for inter-broker traffic, the
    readiness probe and tools):

    * ``scram_users`` ({name: password}): a SASL_PLAINTEXT listener (``sasl_bootstrap_servers``)
      taking SCRAM-SHA-256 and SCRAM-SHA-512. The credentials are written into the metadata log
      when the storage is formatted, so they apply to a new data dir only.
    * ``tls=True``: a TLS listener (``tls_bootstrap_servers``; ``tls_protocol`` is SASL_SSL with
      ``scram_users``, else SSL) whose certificate comes from :func:`make_local_tls` under
      ``<base_dir>/tls``; clients trust ``tls_files.ca_file``. A client certificate from the same
      CA is accepted (``ssl.client.auth=requested``), none is needed.

    No authorizer: an authenticated user may use every topic.
    """

    def __init__(
        self,
        port: int | None = None,
        base_dir: Path | None = None,
        *,
        controller_port: int | None = None,
        auto_create_topics: bool = False,
        num_partitions: int = 3,
        extra_config: Mapping[str, object] | None = None,
        heap: tuple[str, str] = ("256m", "512m"),
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        scram_users: Mapping[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        sasl_port: int | None = None
        tls_port: int | None = None
        if base_dir is not None:
            # a kept data dir keeps its ports: the KRaft voter endpoint is part of its metadata
            saved = _read_properties(Path(base_dir) / "server.properties")
            port = port or _listener_port(saved.get("listeners", ""), "PLAINTEXT")
            controller_port = controller_port or _listener_port(
                saved.get("listeners", ""), "CONTROLLER"
            )
            sasl_port = _listener_port(saved.get("listeners", ""), SASL_LISTENER)
            tls_port = _listener_port(saved.get("listeners", ""), TLS_LISTENER)
        if port is None or controller_port is None:
            p1, p2 = free_ports(2)
            port = port or p1
            controller_port = controller_port or (p2 if p2 != port else free_port())
        if scram_users or tls:
            spare = [p for p in free_ports(4) if p not in (port, controller_port)]
            sasl_port = (sasl_port or spare[0]) if scram_users else None
            tls_port = (tls_port or spare[1]) if tls else None
        self._owns_dir = base_dir is None
        self.base_dir = (
            Path(tempfile.mkdtemp(prefix="taper-kafka-"))
            if base_dir is None
            else Path(base_dir).resolve()
        )
        self.port = port
        self.controller_port = controller_port
        self.sasl_port = sasl_port
        self.tls_port = tls_port
        self.tls_protocol: str | None = None
        self.tls_files: LocalTls | None = None
        self.startup_timeout = startup_timeout
        props = _common_props(auto_create_topics)
        props.update(
            {
                # dynamic quorum, formatted with --standalone (doc §1.3 variant A)
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                "num.partitions": num_partitions,
                "offsets.topic.replication.factor": 1,
                "offsets.topic.num.partitions": 3,
                "transaction.state.log.replication.factor": 1,
                "transaction.state.log.min.isr": 1,
                "share.coordinator.state.topic.replication.factor": 1,
                "share.coordinator.state.topic.min.isr": 1,
            }
        )
        if scram_users or tls:
            props.update(self._secure_listener_props(bool(scram_users)))
        props.update(extra_config or {})
        self._node = _KafkaNode(
            node_id=1,
            port=port,
            controller_port=controller_port,
            data_dir=self.base_dir,
            props=props,
            heap=heap,
            format_args=_scram_format_args(scram_users or {}),
        )
        self.cluster_id: str | None = None
        _LIVE.add(self)

    def _secure_listener_props(self, scram: bool) -> dict[str, object]:
        """The opt-in SASL and TLS listeners (inter-broker traffic stays on PLAINTEXT)."""
        protocols = {"CONTROLLER": "PLAINTEXT", "PLAINTEXT": "PLAINTEXT"}
        ports = {"PLAINTEXT": self.port, "CONTROLLER": self.controller_port}
        props: dict[str, object] = {}

        def scram_login(listener: str) -> None:
            prefix = f"listener.name.{listener.lower()}."
            props[prefix + "sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for mechanism in SCRAM_MECHANISMS:
                props[prefix + f"{mechanism.lower()}.sasl.jaas.config"] = _SCRAM_LOGIN

        if self.sasl_port is not None:
            protocols[SASL_LISTENER] = "SASL_PLAINTEXT"
            ports[SASL_LISTENER] = self.sasl_port
            scram_login(SASL_LISTENER)
        if self.tls_port is not None:
            self.tls_protocol = "SASL_SSL" if scram else "SSL"
            protocols[TLS_LISTENER] = self.tls_protocol
            ports[TLS_LISTENER] = self.tls_port
            if scram:
                scram_login(TLS_LISTENER)
            self.tls_files = make_local_tls(self.base_dir / "tls")
            prefix = f"listener.name.{TLS_LISTENER.lower()}."
            props[prefix + "ssl.keystore.type"] = "PEM"
            props[prefix + "ssl.keystore.location"] = str(self.tls_files.keystore_file)
            props[prefix + "ssl.truststore.type"] = "PEM"  # for client certificates, if any
            props[prefix + "ssl.truststore.location"] = str(self.tls_files.ca_file)
            props[prefix + "ssl.client.auth"] = "requested"
        endpoints = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
        props["listeners"] = props["advertised.listeners"] = endpoints
        props["listener.security.protocol.map"] = ",".join(
            f"{name}:{protocol}" for name, protocol in protocols.items()
        )
        return props

    # -- info
    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_PLAINTEXT (SCRAM) listener; only with ``scram_users``."""
        if self.sasl_port is None:
            raise RuntimeError("this LocalKafka has no SASL listener (no scram_users)")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def tls_bootstrap_servers(self) -> str:
        """The TLS listener (``tls_protocol``: SASL_SSL or SSL); only with ``tls=True``."""
        if self.tls_port is None:
            raise RuntimeError("this LocalKafka has no TLS listener (tls not set)")
        return f"127.0.0.1:{self.tls_port}"

    @property
    def log_path(self) -> Path:
        """The broker's log4j log (``stdout.log`` next to it has JVM stdout/stderr)."""
        return self._node.server_log

    @property
    def pid(self) -> int | None:
        return self._node.proc.pid if self._node.proc else None

    def is_running(self) -> bool:
        return self._node.is_running()

    def log_tail(self) -> str:
        return self._node.log_tail()

    # -- lifecycle
    def start(self) -> LocalKafka:
        """Format (first time only), start the JVM, wait until a client can list topics."""
        if self.is_running():
            return self
        classpath = kafka_classpath()
        self._node.write_config()
        if not self._node.is_formatted():
            self.cluster_id = random_cluster_id()
            _run_formats([self._node], classpath, self.cluster_id, standalone=True)
        self._node.start_process(classpath)
        try:
            _wait_ready(
                [self._node],
                [self.bootstrap_servers],
                {1},
                self.startup_timeout,
                f"LocalKafka({self.bootstrap_servers})",
            )
        except BaseException:
            self._node.kill()
            raise
        return self

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Graceful stop: SIGTERM (Kafka's shutdown hook), SIGKILL after ``timeout`` s."""
        self._node.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the broker (crash simulation). Data stays; ``restart()`` recovers it."""
        self._node.kill()

    def restart(self) -> LocalKafka:
        """Stop if running, start again on the same dir and ports (no reformat)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Remove the data dir if it is a temp dir created by this object (after stopping)."""
        if self.is_running():
            self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _atexit(self) -> None:
        self._node.kill()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<LocalKafka {self.bootstrap_servers} {state} dir={self.base_dir}>"


class LocalKafkaCluster:
    """``nodes`` KRaft nodes (each broker+controller) with static voters on 127.0.0.1.

    Defaults for durability tests (doc §2): RF=3, ``min.insync.replicas=2``,
    ``unclean.leader.election.enable=false``, faster broker session timeouts so a killed node is
    fenced in ~4 s. Nodes are addressed by 0-based index ``i`` (their ``node.id`` is ``i + 1``).
    """

    def __init__(
        self,
        nodes: int = 3,
        base_dir: Path | None = None,
        *,
        auto_create_topics: bool = False,
        extra_config: Mapping[str, object] | None = None,
        heap: tuple[str, str] = ("256m", "512m"),
        startup_timeout: float = 90.0,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self._owns_dir = base_dir is None
        self.base_dir = (
            Path(tempfile.mkdtemp(prefix="taper-kafka-cluster-"))
            if base_dir is None
            else Path(base_dir).resolve()
        )
        self.startup_timeout = startup_timeout
        ports = free_ports(2 * nodes)
        rf = min(3, nodes)
        min_isr = min(2, nodes)
        voters = ",".join(f"{i + 1}@127.0.0.1:{ports[2 * i + 1]}" for i in range(nodes))
        self.nodes: list[_KafkaNode] = []
        for i in range(nodes):
            port, cport = ports[2 * i], ports[2 * i + 1]
            props = _common_props(auto_create_topics)
            props.update(
                {
                    "controller.quorum.voters": voters,
                    "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                    "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                    "num.partitions": 3,
                    "default.replication.factor": rf,
                    "min.insync.replicas": min_isr,
                    "offsets.topic.replication.factor": rf,
                    "offsets.topic.num.partitions": 3,
                    "transaction.state.log.replication.factor": rf,
                    "transaction.state.log.min.isr": min_isr,
                    "share.coordinator.state.topic.replication.factor": rf,
                    "share.coordinator.state.topic.min.isr": min_isr,
                    "unclean.leader.election.enable": False,
                }
            )
            props.update(extra_config or {})
            self.nodes.append(
                _KafkaNode(
                    node_id=i + 1,
                    port=port,
                    controller_port=cport,
                    data_dir=self.base_dir / f"node{i + 1}",
                    props=props,
                    heap=heap,
                )
            )
        self.cluster_id = random_cluster_id()
        _LIVE.add(self)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node_bootstrap(self, i: int) -> str:
        return self.nodes[i].bootstrap

    def running_nodes(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.is_running()]

    def _live_bootstrap(self) -> list[str]:
        return [n.bootstrap for n in self.nodes if n.is_running()]

    def start(self) -> LocalKafkaCluster:
        """Format (first time) and start all nodes together; wait until all are in metadata."""
        classpath = kafka_classpath()
        for n in self.nodes:
            n.write_config()
        # cluster id of an existing (given) base_dir wins
        for n in self.nodes:
            meta = n.log_dirs / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        self.cluster_id = line.split("=", 1)[1].strip()
        _run_formats(self.nodes, classpath, self.cluster_id, standalone=False)
        # Spawn from this thread (see PDEATHSIG note); they boot in parallel anyway.
        for n in self.nodes:
            n.start_process(classpath)
        try:
            _wait_ready(
                self.nodes,
                self._live_bootstrap(),
                {n.node_id for n in self.nodes},
                self.startup_timeout,
                f"LocalKafkaCluster({self.bootstrap_servers})",
            )
        except BaseException:
            for n in self.nodes:
                n.kill()
            raise
        return self

    def kill_node(self, i: int) -> None:
        """SIGKILL node ``i`` (0-based)."""
        self.nodes[i].kill()

    def stop_node(self, i: int, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Graceful stop of node ``i`` (0-based)."""
        self.nodes[i].stop(timeout)

    def start_node(self, i: int, wait: bool = True) -> None:
        """(Re)start node ``i`` (0-based) on its old dir/ports; wait until it is in metadata."""
        node = self.nodes[i]
        node.start_process(kafka_classpath())
        if wait:
            _wait_ready(
                [node],
                self._live_bootstrap(),
                {node.node_id},
                self.startup_timeout,
                f"LocalKafkaCluster node {node.node_id}",
            )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop all nodes (SIGTERM in parallel, SIGKILL after ``timeout``)."""
        for n in self.nodes:
            if n.proc is not None:
                signal_group(n.proc, signal.SIGTERM)
        for n in self.nodes:
            n.stop(timeout)  # waits; escalates to SIGKILL

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()

    def cleanup(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes)

    def _atexit(self) -> None:
        self.kill()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _run_foreground(
    start: Callable[[], Any], stop: Callable[[], None], banner: Callable[[], str]
) -> int:
    """Start, print the banner, block until SIGINT/SIGTERM, stop cleanly. Shared by the CLIs."""
    stop_event = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop_event.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.monotonic()
        start()
        print(banner(), f"(ready in {time.monotonic() - t0:.1f}s; Ctrl-C to stop)", flush=True)
        while not stop_event.wait(1.0):
            pass
        print("stopping ...", flush=True)
        return 0
    finally:
        stop()
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.localstack.kafka")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a single-node KRaft broker in the foreground")
    run.add_argument("--port", type=int, default=9092)
    run.add_argument("--controller-port", type=int, default=None)
    run.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data dir (kept; reused on the next run). Default: temp dir, deleted",
    )
    run.add_argument("--auto-create-topics", action="store_true")
    run.add_argument(
        "--scram-user",
        action="append",
        default=[],
        metavar="NAME=PASSWORD",
        help="add a SASL/SCRAM listener with this user (repeatable; new data dirs only)",
    )
    run.add_argument("--tls", action="store_true", help="add a TLS listener (throwaway CA)")
    sub.add_parser("classpath", help="resolve the jars and print the classpath")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.cmd == "classpath":
        print(kafka_classpath())
        return 0
    scram_users = dict(u.split("=", 1) for u in args.scram_user if "=" in u)
    kafka = LocalKafka(
        port=args.port,
        base_dir=args.data,
        controller_port=args.controller_port,
        auto_create_topics=args.auto_create_topics,
        scram_users=scram_users or None,
        tls=args.tls,
    )

    def banner() -> str:
        text = (
            f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}  (data: {kafka.base_dir},"
            f" log: {kafka.log_path})"
        )
        if kafka.sasl_port is not None:
            text += (
                f"\nSASL listener: KAFKA_BOOTSTRAP_SERVERS={kafka.sasl_bootstrap_servers}"
                " KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"
            )
        if kafka.tls_files is not None:
            text += (
                f"\nTLS listener: KAFKA_BOOTSTRAP_SERVERS={kafka.tls_bootstrap_servers}"
                f" KAFKA_SECURITY_PROTOCOL={kafka.tls_protocol}"
                f" KAFKA_SSL_CAFILE={kafka.tls_files.ca_file}"
            )
        return text

    return _run_foreground(kafka.start, kafka.cleanup, banner)


if __name__ == "__main__":
    sys.exit(main())
