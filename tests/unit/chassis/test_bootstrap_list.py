"""A multi-broker bootstrap string reaches the clients as one address per broker.

FastStream wraps a plain string in a one-element list, so ``"a:1,b:2"`` used to reach aiokafka as a
single host called ``a:1,b:2``: no service could connect to a cluster."""

from __future__ import annotations

import pytest

from services.chassis.kafka import bootstrap_list, make_broker


def test_splits_and_strips_every_broker() -> None:
    assert bootstrap_list(" 127.0.0.1:1, 127.0.0.1:2 ,127.0.0.1:3,") == [
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
    ]
    assert bootstrap_list("kafka:9092") == ["kafka:9092"]


def test_an_empty_bootstrap_is_refused() -> None:
    with pytest.raises(ValueError, match="no broker"):
        bootstrap_list(" , ")


def test_the_broker_clients_get_one_address_per_broker() -> None:
    broker = make_broker("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", client_id="t")
    builder = broker.config.broker_config.builder  # the aiokafka consumer factory
    assert builder.keywords["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
