"""Throwaway TLS material for local servers: a CA, a server certificate and a client certificate.

:func:`make_local_tls` writes them (PEM) under one directory; :class:`LocalTls` names the files.
``LocalKafka(tls=True)`` serves its TLS listener with them (clients trust ``ca_file``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


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
