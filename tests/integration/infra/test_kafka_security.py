"""Kafka security end to end: SASL/SCRAM (SASL_PLAINTEXT) and SCRAM over TLS (SASL_SSL).

The session broker has no SCRAM, so this module starts its own: one :class:`LocalKafka` with a
SCRAM user, a SASL_PLAINTEXT listener and a SASL_SSL listener (throwaway CA). A service's real
clients go through it as configured by the settings: the chassis broker (``make_broker``, via
``ServiceRuntime``), topic provisioning (``ensure_topics``) and the ops tooling (kafka-python
consumer, producer and admin). Wrong, missing or unverifiable credentials are refused within a
bound, the reason in the service broker's (aiokafka) log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from pydantic import SecretStr

from contracts import ALL_TOPICS, DOSE_REDUCED, DoseReduced
from deploy.localstack.kafka import LocalKafka
from services.chassis.kafka import KafkaSecurity, ensure_topics, make_broker
from services.chassis.runtime import ServiceRuntime
from services.monitoring.settings import MonitoringSettings
from tests.dead_letter_round_trip import refuse_then_replay
from tests.plugins.infra import unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USER = "taper-monitoring"
PASSWORD = "s3cret-for-tests-only"  # a throwaway broker's
REFUSAL_BOUND_S = 20.0  # a refused client must give up within this, never hang


@pytest.fixture(scope="module")
def scram_kafka() -> Iterator[LocalKafka]:
    kafka = LocalKafka(scram_users={USER: PASSWORD}, tls=True)
    try:
        kafka.start()
    except Exception as exc:
        kafka.cleanup()
        unavailable(f"LocalKafka with SCRAM and TLS failed: {type(exc).__name__}: {exc}")
    try:
        yield kafka
    finally:
        kafka.stop()
        kafka.cleanup()


def _listener(kafka: LocalKafka, protocol: str) -> tuple[str, str | None]:
    """Bootstrap servers and CA file of ``kafka``'s listener for ``protocol``."""
    if protocol == "SASL_PLAINTEXT":
        return kafka.sasl_bootstrap_servers, None
    assert kafka.tls_files is not None and kafka.tls_protocol == protocol
    return kafka.tls_bootstrap_servers, str(kafka.tls_files.ca_file)


def _security(kafka: LocalKafka, protocol: str, **overrides: Any) -> tuple[str, KafkaSecurity]:
    bootstrap, cafile = _listener(kafka, protocol)
    values: dict[str, Any] = {
        "protocol": protocol,
        "username": USER,
        "password": SecretStr(PASSWORD),
        "cafile": cafile,
    }
    return bootstrap, KafkaSecurity(**(values | overrides))


# ------------------------------------------------------------------------------------------
# a service's real clients, configured from its settings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512")],
)
async def test_a_service_provisions_consumes_dead_letters_and_replays_over_scram(
    scram_kafka: LocalKafka, tmp_path: Path, protocol: str, mechanism: str
) -> None:
    bootstrap, cafile = _listener(scram_kafka, protocol)
    settings = MonitoringSettings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/monitoring.db",
        kafka_bootstrap_servers=bootstrap,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=cafile,
        relay_poll_interval_s=0.2,
        timer_poll_interval_s=0.1,
        consumer_retry_backoff_s=0.01,
    )

    async def over_scram(runtime: ServiceRuntime, event: DoseReduced) -> None:
        security = runtime.kafka_security
        assert (security.protocol, security.sasl_mechanism) == (protocol, mechanism)
        topics = await asyncio.to_thread(_topics, bootstrap, security)  # ensure_topics did it
        assert {DOSE_REDUCED.name, DOSE_REDUCED.dlq} <= topics
        await runtime.broker.publish(  # the service's own FastStream broker
            event.to_bytes(),
            DOSE_REDUCED.name,
            key=str(event.patient_id).encode(),
            headers={"event_id": str(event.event_id)},
        )

    # consumed, refused, dead-lettered, listed, replayed, processed once: all over SCRAM
    letter, _ = await refuse_then_replay(settings, over_scram)
    assert letter.summary()["dlq.consumer"] == "monitoring"


def _topics(bootstrap: str, security: KafkaSecurity) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **security.for_kafka_python())
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_ensure_topics_provisions_every_topic_over_sasl_ssl(scram_kafka: LocalKafka) -> None:
    bootstrap, security = _security(scram_kafka, "SASL_SSL", sasl_mechanism="SCRAM-SHA-256")
    ensure_topics(bootstrap, ALL_TOPICS, security=security)
    assert ensure_topics(bootstrap, ALL_TOPICS, security=security) == []  # all there now
    wanted = {t.name for t in ALL_TOPICS} | {t.dlq for t in ALL_TOPICS}
    deadline = time.monotonic() + 15  # the broker's metadata cache catches up asynchronously
    while not wanted <= (listed := _topics(bootstrap, security)):
        assert time.monotonic() < deadline, f"missing: {sorted(wanted - listed)}"
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------
# refused: wrong password, no credentials, no CA
# ------------------------------------------------------------------------------------------


async def _broker_start_is_refused(bootstrap: str, security: KafkaSecurity) -> float:
    """Start a chassis broker that must be refused; returns how long the refusal took."""
    broker = make_broker(bootstrap, client_id="security-test", security=security)
    started = time.monotonic()
    try:
        # "Unable to bootstrap"; a hang would end in TimeoutError instead and fail the test
        with pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(broker.start(), REFUSAL_BOUND_S)
        return time.monotonic() - started
    finally:
        await asyncio.wait_for(broker.stop(), 10)


def _admin_is_refused(bootstrap: str, security: KafkaSecurity) -> None:
    """kafka-python keeps retrying a refused bootstrap: bounded, it ends in a KafkaError."""
    with pytest.raises(KafkaError):  # KafkaTimeoutError: Unable to bootstrap
        KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="security-test",
            bootstrap_timeout_ms=4000,
            **security.for_kafka_python(),
        ).close()


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_a_wrong_password_is_refused_with_an_authentication_error(
    scram_kafka: LocalKafka, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    bootstrap, security = _security(scram_kafka, protocol, password=SecretStr("not-it"))
    with caplog.at_level(logging.WARNING):
        await _broker_start_is_refused(bootstrap, security)
        assert "SaslAuthenticationFailed" in caplog.text
        caplog.clear()
        # kafka-python: refused within the bound, but its log may not say why. 3.0.12 drops the
        # bytes read together with the broker's close ("socket disconnected"), and the broker
        # closes right after its SaslAuthenticate error response.
        await asyncio.to_thread(_admin_is_refused, bootstrap, security)
    _, unknown_user = _security(scram_kafka, protocol, username="mallory")
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        await _broker_start_is_refused(bootstrap, unknown_user)
        assert "SaslAuthenticationFailed" in caplog.text


async def test_no_credentials_are_refused_on_the_sasl_listeners(scram_kafka: LocalKafka) -> None:
    # A plaintext client on the SASL listener; a TLS client without SASL on the SASL_SSL one.
    _, cafile = _listener(scram_kafka, "SASL_SSL")
    for bootstrap, security in (
        (scram_kafka.sasl_bootstrap_servers, KafkaSecurity()),
        (scram_kafka.tls_bootstrap_servers, KafkaSecurity(protocol="SSL", cafile=cafile)),
    ):
        await _broker_start_is_refused(bootstrap, security)
        await asyncio.to_thread(_admin_is_refused, bootstrap, security)


async def test_tls_without_the_brokers_ca_is_refused(
    scram_kafka: LocalKafka, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, security = _security(scram_kafka, "SASL_SSL", cafile=None)  # system trust store
    with caplog.at_level(logging.WARNING):
        await _broker_start_is_refused(bootstrap, security)
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_a_client_certificate_from_the_ca_is_accepted(scram_kafka: LocalKafka) -> None:
    assert scram_kafka.tls_files is not None
    bootstrap, security = _security(
        scram_kafka,
        "SASL_SSL",
        certfile=str(scram_kafka.tls_files.client_cert_file),
        keyfile=str(scram_kafka.tls_files.client_key_file),
    )
    assert isinstance(_topics(bootstrap, security), set)


def test_the_plaintext_listener_is_unchanged(scram_kafka: LocalKafka) -> None:
    """Opting in to SCRAM/TLS adds listeners; the PLAINTEXT one (inter-broker, probes) stays."""
    assert isinstance(_topics(scram_kafka.bootstrap_servers, KafkaSecurity()), set)
