"""Kafka wiring: the broker every service uses, topic provisioning (kafka-python admin), and the
security options (SASL/SCRAM, TLS) every client the services construct is given."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from pydantic import SecretStr

from contracts import Topic
from services.chassis.topic_drift import Drift, check_topics, topic_specs

if TYPE_CHECKING:
    from services.chassis.settings import ServiceSettings

log = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]
# PHI-bearing events (and an unencrypted session a SCRAM login does not protect) would cross the
# network in clear: refused in production.
CLEARTEXT_PROTOCOLS: frozenset[str] = frozenset({"PLAINTEXT", "SASL_PLAINTEXT"})


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to and encrypts its traffic with the brokers.

    One object, translated for each client library: :meth:`for_faststream` (FastStream's
    ``KafkaBroker(security=...)``, i.e. aiokafka) and :meth:`for_kafka_python` (kafka-python's
    admin, consumer and producer). TLS verifies the broker's certificate *and* host name against
    ``cafile`` (or the system trust store); ``certfile``/``keyfile`` add a client certificate.
    The password is a :class:`~pydantic.SecretStr`: it never shows in a repr or a log line.
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in get_args(SecurityProtocol):
            raise ValueError(f"unknown Kafka security protocol {self.protocol!r}")
        if self.sasl_mechanism not in get_args(SaslMechanism):
            raise ValueError(f"unsupported SASL mechanism {self.sasl_mechanism!r}")
        if self.uses_sasl and not (self.username and self.password_value):
            raise ValueError(f"{self.protocol} needs a SASL username and password")

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaSecurity:
        """The settings' security; production refuses the cleartext protocols."""
        if settings.environment == "production" and (
            settings.kafka_security_protocol in CLEARTEXT_PROTOCOLS
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} is refused in "
                "production (the session and its PHI-bearing events would travel in clear): "
                "use SASL_SSL (or SSL)"
            )
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (certificate chain and host name), or None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def for_faststream(self) -> BaseSecurity | None:
        """``KafkaBroker(security=...)``; None for PLAINTEXT (FastStream's default)."""
        context = self.ssl_context()
        if not self.uses_sasl:
            return BaseSecurity(ssl_context=context) if context is not None else None
        scram = SASLScram256 if self.sasl_mechanism == "SCRAM-SHA-256" else SASLScram512
        assert self.username is not None and self.password_value is not None  # __post_init__
        return scram(self.username, self.password_value, ssl_context=context)

    def for_kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's admin client, consumer and producer."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password_value,
            }
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()  # kafka-python ignores its ssl_* then
        return options


PLAINTEXT = KafkaSecurity()


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """``"a:9092, b:9092"`` -> ``["a:9092", "b:9092"]``.

    FastStream wraps a string in a one-element list, so aiokafka would read a multi-broker string
    as one host named ``a:9092,b:9092`` and never connect to a cluster."""
    hosts = [h.strip() for h in bootstrap_servers.split(",") if h.strip()]
    if not hosts:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS names no broker")
    return hosts


def make_broker(
    bootstrap_servers: str, *, client_id: str, security: KafkaSecurity = PLAINTEXT
) -> KafkaBroker:
    """A broker whose producer never loses an acknowledged write.

    ``acks="all"`` with the idempotent producer: a record is acknowledged only once every in-sync
    replica has it, and retries cannot duplicate or reorder it. FastStream's defaults (``acks=1``,
    no idempotence) are not enough for clinical events.
    """
    return KafkaBroker(
        bootstrap_list(bootstrap_servers),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        graceful_timeout=15.0,
        # Not under "faststream": that logger has its own coloured handler and does not
        # propagate, so its lines would bypass the JSON logs. Per-message lines are DEBUG.
        logger=logging.getLogger(f"taper.broker.{client_id}"),
        log_level=logging.DEBUG,
        security=security.for_faststream(),
    )


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[Topic],
    *,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    with_dead_letters: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the topics (and their ``.dlq``) that do not exist yet; returns the names created."""
    min_isr = min_insync_replicas or (2 if replication_factor >= 3 else 1)
    specs = topic_specs(
        topics,
        replication_factor=replication_factor,
        min_insync_replicas=min_isr,
        with_dead_letters=with_dead_letters,
    )
    wanted = {
        s.name: NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
        for s in specs
    }
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="taper-provisioner",
        **security.for_kafka_python(),
    )
    try:
        existing = set(admin.list_topics())
        missing = [t for name, t in wanted.items() if name not in existing]
        created: list[str] = []
        for new_topic in missing:
            try:
                admin.create_topics([new_topic])
                created.append(new_topic.name)
            except TopicAlreadyExistsError:
                pass  # another process created it first
        if created:
            log.info("topics created", extra={"topics": created})
        return created
    finally:
        admin.close()


def check_existing_topics(
    bootstrap_servers: str,
    topics: Iterable[Topic],
    *,
    replication_factor: int,
    min_insync_replicas: int,
    production: bool,
    security: KafkaSecurity = PLAINTEXT,
) -> list[Drift]:
    """Warn about existing topics that differ from their specs; production refuses unsafe ones
    (see ``topic_drift``). Run at every start, whether or not this process provisions topics."""
    specs = topic_specs(
        topics, replication_factor=replication_factor, min_insync_replicas=min_insync_replicas
    )
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="taper-topic-check",
            **security.for_kafka_python(),
        )
    except Exception as exc:
        if production:
            raise RuntimeError(f"cannot check the topics: {type(exc).__name__}") from exc
        log.warning("topics not checked", extra={"error": type(exc).__name__})
        return []
    try:
        return check_topics(admin, specs, production=production)
    finally:
        admin.close()
