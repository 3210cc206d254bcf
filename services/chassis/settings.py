"""Settings every service reads from its environment (12-factor).

Each service subclasses :class:`ServiceSettings` with its own ``env_prefix`` (``SCHEDULER_``,
``MONITORING_`` ...); values shared by the whole stack (broker, clock, auth) are read without a
prefix too, so one ``KAFKA_BOOTSTRAP_SERVERS`` serves every process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - refused in production
# Production's durability floor: an acknowledged write (acks=all) is on at least two brokers and
# one broker can be lost without stopping writes (Kafka's documented recommendation for RF 3).
PRODUCTION_MIN_REPLICATION_FACTOR = 3
PRODUCTION_MIN_INSYNC_REPLICAS = 2
_ENVIRONMENT_KEYS = ("environment", "taper_env", "TAPER_ENV")


def _shared(name: str) -> AliasChoices:
    """Accept both the prefixed and the stack-wide variable name."""
    return AliasChoices(name.lower(), name.upper())


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str
    # No default: a process that does not say where it runs would otherwise run as development
    # (the public dev secrets, cleartext Kafka, SQLite, a localhost pager). It refuses to start.
    environment: Literal["development", "test", "production"] = Field(
        validation_alias=_shared("TAPER_ENV")
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Addresses whose X-Forwarded-For is believed (the gateway's): the audit log's "from where" is
    # the client behind it. Anyone else's header is ignored, so a client cannot forge its address.
    http_forwarded_allow_ips: str = Field(
        default="127.0.0.1", validation_alias=_shared("TAPER_FORWARDED_ALLOW_IPS")
    )

    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means an SQLite file under var/.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", validation_alias=_shared("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_provision_topics: bool = Field(
        default=True,
        validation_alias=_shared("KAFKA_PROVISION_TOPICS"),
        description="Create this service's topics and DLQs on start (idempotent).",
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, validation_alias=_shared("KAFKA_REPLICATION_FACTOR")
    )
    # Empty: 2 with a replication factor of 3 or more, else 1 (a single local broker).
    kafka_min_insync_replicas: int | None = Field(
        default=None, ge=1, validation_alias=_shared("KAFKA_MIN_INSYNC_REPLICAS")
    )
    # Kafka security (README "Kafka security"): every client gets these through chassis/kafka.py's
    # KafkaSecurity, which refuses the cleartext protocols in production.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        default="PLAINTEXT", validation_alias=_shared("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", validation_alias=_shared("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(
        default=None, validation_alias=_shared("KAFKA_SASL_USERNAME")
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validation_alias=_shared("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: str | None = Field(
        default=None,
        validation_alias=_shared("KAFKA_SSL_CAFILE"),
        description="CA bundle (PEM) the broker certificates are verified against; "
        "empty means the system's trust store.",
    )
    kafka_ssl_certfile: str | None = Field(
        default=None,
        validation_alias=_shared("KAFKA_SSL_CERTFILE"),
        description="Client certificate (PEM) for mutual TLS; optional.",
    )
    kafka_ssl_keyfile: str | None = Field(
        default=None,
        validation_alias=_shared("KAFKA_SSL_KEYFILE"),
        description="Private key (PEM) of KAFKA_SSL_CERTFILE, if not in that file.",
    )

    # Consumers: bounded in-process retries before a message goes to the dead-letter topic.
    consumer_max_attempts: int = 3
    consumer_retry_backoff_s: float = 0.2
    # Offsets are committed in batches after the DB commits they cover (0 = after every message).
    consumer_commit_interval_s: float = 0.2
    consumer_commit_batch: int = 200

    # Outbox relay: woken on commit; the poll is only a safety net (other processes, restarts).
    # A replica may run without its relay (the advisory lock lets one relay work at a time anyway).
    relay_enabled: bool = True
    relay_poll_interval_s: float = 1.0
    relay_batch_size: int = 200
    timer_poll_interval_s: float = 0.5
    # Timers fired at once (PostgreSQL; SQLite has one writer and fires one at a time).
    timer_concurrency: int = Field(default=1, ge=1, le=64)

    # Retention of the reliability tables (chassis/retention.py: why the inbox lives longest).
    retention_outbox_days: float = 7
    retention_inbox_days: float = 30
    retention_timers_days: float = 30
    retention_idempotency_hours: float = 24  # Idempotency-Key answers (chassis/idempotency.py)
    retention_interval_s: float = 3600

    # Time: all services of a stack share one anchor and scale so they agree on "now".
    clock_scale: float = Field(default=1.0, gt=0, validation_alias=_shared("TAPER_CLOCK_SCALE"))
    clock_anchor: AwareDatetime | None = Field(
        default=None, validation_alias=_shared("TAPER_CLOCK_ANCHOR")
    )

    # Auth: HS256 with a shared secret for development; production sets a real secret/key.
    jwt_secret: str = Field(default=DEV_JWT_SECRET, validation_alias=_shared("TAPER_JWT_SECRET"))
    jwt_issuer: str = Field(default="taper-dev", validation_alias=_shared("TAPER_JWT_ISSUER"))
    jwt_audience: str = Field(default="taper-api", validation_alias=_shared("TAPER_JWT_AUDIENCE"))
    # The identity provider's signing keys (RS256/ES256): its JWKS URL (fetched and cached), or
    # the JWKS document itself (a JSON string, for air-gapped setups and tests).
    jwt_jwks_url: str | None = Field(default=None, validation_alias=_shared("TAPER_JWT_JWKS_URL"))
    jwt_jwks: str | None = Field(default=None, validation_alias=_shared("TAPER_JWT_JWKS"))
    # Clock skew tolerated between the identity provider and us on exp/nbf/iat (RFC 7519 §4.1.4
    # allows "a small leeway, usually no more than a few minutes").
    jwt_leeway_s: float = Field(
        default=30, ge=0, le=300, validation_alias=_shared("TAPER_JWT_LEEWAY_S")
    )

    otlp_endpoint: str | None = Field(
        default=None, validation_alias=_shared("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    # Zipkin's span API (e.g. http://127.0.0.1:9411/api/v2/spans): `make run` sets it.
    zipkin_endpoint: str | None = Field(
        default=None, validation_alias=_shared("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
    )
    log_level: str = Field(default="INFO", validation_alias=_shared("TAPER_LOG_LEVEL"))

    @model_validator(mode="before")
    @classmethod
    def _environment_is_explicit(cls, data: Any) -> Any:
        if isinstance(data, dict) and not any(data.get(k) for k in _ENVIRONMENT_KEYS):
            raise ValueError(
                "TAPER_ENV must be set (development, test or production): a process started "
                "without an explicit environment refuses to start"
            )
        return data

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> ServiceSettings:
        if self.environment == "production" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("TAPER_JWT_SECRET must be set in production (dev secret refused)")
        if self.environment == "production" and not (self.jwt_jwks_url or self.jwt_jwks):
            # Production accepts only the identity provider's asymmetric tokens (HS256 is the
            # development issuer's): without its keys no request could ever be authenticated.
            raise ValueError("TAPER_JWT_JWKS_URL (or TAPER_JWT_JWKS) must be set in production")
        return self

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> ServiceSettings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in (
                    ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if not (value.get_secret_value() if isinstance(value, SecretStr) else value)
            ]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} must be set when KAFKA_SECURITY_PROTOCOL is "
                    f"{self.kafka_security_protocol}"
                )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE")
        return self

    @model_validator(mode="after")
    def _production_is_durable(self) -> ServiceSettings:
        if self.kafka_min_insync_replicas_effective > self.kafka_replication_factor:
            raise ValueError(
                "KAFKA_MIN_INSYNC_REPLICAS is above KAFKA_REPLICATION_FACTOR: no write could "
                "ever be acknowledged"
            )
        if self.environment != "production":
            return self
        if self.kafka_replication_factor < PRODUCTION_MIN_REPLICATION_FACTOR:
            raise ValueError(
                f"KAFKA_REPLICATION_FACTOR must be at least {PRODUCTION_MIN_REPLICATION_FACTOR}"
                " in production"
            )
        if self.kafka_min_insync_replicas_effective < PRODUCTION_MIN_INSYNC_REPLICAS:
            raise ValueError(
                f"KAFKA_MIN_INSYNC_REPLICAS must be at least {PRODUCTION_MIN_INSYNC_REPLICAS}"
                " in production"
            )
        if self.effective_database_url.startswith("sqlite"):
            # One file on one host, one writer: no replicas, no SKIP LOCKED, no point-in-time
            # recovery. Development and tests only.
            raise ValueError(
                f"{self.service_name.upper()}_DATABASE_URL must be a PostgreSQL URL in production"
                " (SQLite refused)"
            )
        return self

    @property
    def kafka_min_insync_replicas_effective(self) -> int:
        if self.kafka_min_insync_replicas is not None:
            return self.kafka_min_insync_replicas
        return 2 if self.kafka_replication_factor >= 3 else 1

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///var/{self.service_name}.db"

    @property
    def url_prefix(self) -> str:
        """Every route lives under ``/api/<service-kebab>``; the gateway passes it unchanged."""
        return "/api/" + self.service_name.replace("_", "-")

    def clock_anchor_or(self, default: datetime) -> datetime:
        return self.clock_anchor or default
