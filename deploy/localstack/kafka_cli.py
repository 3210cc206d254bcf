"""The local broker's command line: ``python -m deploy.localstack.kafka`` (or ``.kafka_cli``).

::

    python -m deploy.localstack.kafka run [--port 9092] [--data DIR] [--auto-create-topics]
        [--scram-user NAME=PASSWORD ...] [--tls]
    python -m deploy.localstack.kafka classpath
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from deploy.localstack.kafka import LocalKafka, kafka_classpath
from deploy.localstack.process import run_foreground


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

    return run_foreground(kafka.start, kafka.cleanup, banner)


if __name__ == "__main__":
    sys.exit(main())
