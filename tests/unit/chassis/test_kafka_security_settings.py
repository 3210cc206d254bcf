"""Kafka security settings: validation, production refusal, secrecy of the password, and the one
translation (``KafkaSecurity``) into FastStream's and kafka-python's client options."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import ValidationError

from deploy.localstack.tls import LocalTls, make_local_tls
from services.chassis import ops
from services.chassis.kafka import PLAINTEXT, KafkaSecurity, make_broker
from services.chassis.settings import ServiceSettings
from services.monitoring.settings import MonitoringSettings

PASSWORD = "correct-horse-battery-staple"
PRODUCTION = {
    "environment": "production",
    "jwt_secret": "p" * 40,
    "jwt_jwks_url": "https://idp.example/.well-known/jwks.json",
    "database_url": "postgresql+asyncpg://svc@db.example/svc",
    "kafka_replication_factor": 3,
}


def settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(**({"service_name": "svc", "environment": "test"} | overrides))


def sasl(**overrides: Any) -> ServiceSettings:
    return settings(
        **(
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_username": "svc-monitoring",
                "kafka_sasl_password": PASSWORD,
            }
            | overrides
        )
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LocalTls:
    return make_local_tls(tmp_path_factory.mktemp("tls"))


# ------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------


def test_the_defaults_change_nothing() -> None:
    s = settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("PLAINTEXT", "SCRAM-SHA-512")
    security = KafkaSecurity.from_settings(s)
    assert security == PLAINTEXT
    assert security.for_faststream() is None  # KafkaBroker's own default
    assert security.for_kafka_python() == {"security_protocol": "PLAINTEXT"}  # kafka-python's
    assert security.ssl_context() is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_username_and_a_password_and_the_error_names_them(protocol: str) -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        settings(kafka_security_protocol=protocol)
    with pytest.raises(ValidationError, match="KAFKA_SASL_PASSWORD must be set") as caught:
        settings(kafka_security_protocol=protocol, kafka_sasl_username="svc")
    assert "KAFKA_SASL_USERNAME" not in str(caught.value)
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME must be set"):
        settings(kafka_security_protocol=protocol, kafka_sasl_password=PASSWORD)
    with pytest.raises(ValidationError, match="KAFKA_SASL_PASSWORD"):
        settings(
            kafka_security_protocol=protocol, kafka_sasl_username="svc", kafka_sasl_password=""
        )


def test_unknown_protocols_and_mechanisms_and_a_key_without_its_certificate_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"kafka_security_protocol|KAFKA_SECURITY_PROTOCOL"):
        settings(kafka_security_protocol="SASL_TLS")
    with pytest.raises(ValidationError):
        sasl(kafka_sasl_mechanism="PLAIN")
    with pytest.raises(
        ValidationError, match="KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE"
    ):
        settings(kafka_security_protocol="SSL", kafka_ssl_keyfile="/etc/kafka/client.key")


def test_the_stack_wide_variables_are_read_by_every_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "svc-monitoring")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/kafka/ca.pem")
    s = MonitoringSettings(environment="test")
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert s.kafka_sasl_username == "svc-monitoring"
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == PASSWORD
    assert s.kafka_ssl_cafile == "/etc/kafka/ca.pem"


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_production_refuses_the_cleartext_protocols(protocol: str) -> None:
    s = sasl(kafka_security_protocol=protocol, **PRODUCTION)
    with pytest.raises(ValueError, match=f"KAFKA_SECURITY_PROTOCOL={protocol} is refused"):
        KafkaSecurity.from_settings(s)
    KafkaSecurity.from_settings(sasl(kafka_security_protocol=protocol))  # fine outside production


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_production_accepts_tls(protocol: str) -> None:
    assert KafkaSecurity.from_settings(sasl(kafka_security_protocol=protocol, **PRODUCTION))


def test_the_password_never_shows_in_a_repr_or_a_dump() -> None:
    s = sasl()
    security = KafkaSecurity.from_settings(s)
    for text in (repr(s), str(s), s.model_dump_json(), repr(security), str(security)):
        assert PASSWORD not in text
    assert security.password_value == PASSWORD  # only on purpose


def test_kafka_security_refuses_sasl_without_credentials_when_built_directly() -> None:
    with pytest.raises(ValueError, match="SASL username and password"):
        KafkaSecurity(protocol="SASL_SSL", username="svc")
    with pytest.raises(ValueError, match="unknown Kafka security protocol"):
        KafkaSecurity(protocol="TLS")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# translation into the clients' options
# ------------------------------------------------------------------------------------------


def test_sasl_plaintext_with_scram_sha_256() -> None:
    security = KafkaSecurity.from_settings(
        sasl(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256")
    )
    faststream = security.for_faststream()
    assert isinstance(faststream, SASLScram256) and not faststream.use_ssl
    assert parse_security(faststream) == {  # what FastStream hands aiokafka
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc-monitoring",
        "sasl_plain_password": PASSWORD,
    }
    assert security.for_kafka_python() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc-monitoring",
        "sasl_plain_password": PASSWORD,
    }


def test_sasl_ssl_with_scram_sha_512_and_the_ca(tls: LocalTls) -> None:
    security = KafkaSecurity.from_settings(sasl(kafka_ssl_cafile=str(tls.ca_file)))
    faststream = security.for_faststream()
    assert isinstance(faststream, SASLScram512) and faststream.use_ssl
    aiokafka = parse_security(faststream)
    assert aiokafka["security_protocol"] == "SASL_SSL"
    assert aiokafka["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(aiokafka["ssl_context"], ssl.SSLContext)
    kafka_python = security.for_kafka_python()
    assert kafka_python["security_protocol"] == "SASL_SSL"
    assert kafka_python["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kafka_python["sasl_plain_password"] == PASSWORD
    assert isinstance(kafka_python["ssl_context"], ssl.SSLContext)


def test_ssl_without_sasl(tls: LocalTls) -> None:
    security = KafkaSecurity.from_settings(
        settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls.ca_file))
    )
    faststream = security.for_faststream()
    assert type(faststream) is BaseSecurity
    assert parse_security(faststream)["security_protocol"] == "SSL"
    options = security.for_kafka_python()
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"


def test_the_chassis_broker_gets_the_options() -> None:
    broker = make_broker(
        "127.0.0.1:9", client_id="svc", security=KafkaSecurity.from_settings(sasl())
    )
    assert broker._connection_kwargs["security_protocol"] == "SASL_SSL"
    assert broker._connection_kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert broker._connection_kwargs["acks"] == "all"  # the durability options stay
    plain = make_broker("127.0.0.1:9", client_id="svc")
    assert plain._connection_kwargs.get("security_protocol", "PLAINTEXT") == "PLAINTEXT"


def test_the_ops_cli_uses_the_environments_security(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker.example:9096")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "ops")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    seen: dict[str, Any] = {}

    def fake_lag(bootstrap: str, group: str, *, security: KafkaSecurity) -> dict[str, int]:
        seen.update(bootstrap=bootstrap, group=group, security=security)
        return {}

    monkeypatch.setattr(ops, "consumer_lag", fake_lag)
    assert ops.main(["lag", "monitoring"]) == 0
    assert seen["bootstrap"] == "broker.example:9096"
    assert (seen["security"].protocol, seen["security"].username) == ("SASL_SSL", "ops")


# ------------------------------------------------------------------------------------------
# the TLS context: the CA file, host name verification, client certificates
# ------------------------------------------------------------------------------------------


def test_the_ssl_context_trusts_the_ca_file_and_verifies_host_names(tls: LocalTls) -> None:
    context = KafkaSecurity(protocol="SSL", cafile=str(tls.ca_file)).ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("taper local Kafka CA" in str(ca["subject"]) for ca in context.get_ca_certs())


def test_client_certificates_are_loaded_and_a_missing_ca_file_fails_loudly(
    tls: LocalTls, tmp_path: Path
) -> None:
    security = KafkaSecurity(
        protocol="SSL",
        cafile=str(tls.ca_file),
        certfile=str(tls.client_cert_file),
        keyfile=str(tls.client_key_file),
    )
    assert security.ssl_context() is not None
    with pytest.raises(ssl.SSLError):  # the broker's key does not match the client certificate
        KafkaSecurity(
            protocol="SSL", certfile=str(tls.client_cert_file), keyfile=str(tls.keystore_file)
        ).ssl_context()
    with pytest.raises(FileNotFoundError):
        KafkaSecurity(protocol="SSL", cafile=str(tmp_path / "absent.pem")).ssl_context()


@pytest.fixture
def tls_server(tls: LocalTls) -> Iterator[int]:
    """A TLS server with the local broker's certificate (SANs 127.0.0.1 and localhost)."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tls.keystore_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.recv(1)
            except (OSError, ssl.SSLError):
                pass  # the client refused us, or closed

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(5)
    listener.close()


def test_the_handshake_checks_the_ca_and_the_host_name(tls: LocalTls, tls_server: int) -> None:
    def handshake(security: KafkaSecurity, host: str) -> None:
        context = security.ssl_context()
        assert context is not None
        with (
            socket.create_connection(("127.0.0.1", tls_server), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            pass

    trusted = KafkaSecurity(protocol="SSL", cafile=str(tls.ca_file))
    handshake(trusted, "127.0.0.1")
    handshake(trusted, "localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
        handshake(trusted, "kafka.other.example")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"self-signed|unable to get local"):
        handshake(KafkaSecurity(protocol="SSL"), "127.0.0.1")  # system CAs only
