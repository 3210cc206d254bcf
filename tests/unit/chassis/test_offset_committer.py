"""Offsets are committed in batches, per partition, never beyond what was processed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from services.chassis.consumer import OffsetCommitter


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


class FakeKafkaConsumer:
    def __init__(self, fail: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = fail

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise RuntimeError("partition revoked")
        self.commits.append(dict(offsets))


@dataclass
class Msg:
    raw_message: Record
    consumer: Any = field(default_factory=FakeKafkaConsumer)


async def test_marks_are_committed_as_the_next_offset_per_partition_on_flush() -> None:
    kafka = FakeKafkaConsumer()
    committer = OffsetCommitter(interval_s=60, batch=100)
    for partition, offset in [(0, 5), (1, 9), (0, 6), (0, 7)]:
        await committer.mark(Msg(Record("t", partition, offset), kafka))  # type: ignore[arg-type]
    assert kafka.commits == []  # batched: nothing yet
    await committer.flush()
    assert kafka.commits == [{TopicPartition("t", 0): 8, TopicPartition("t", 1): 10}]
    await committer.flush()
    assert len(kafka.commits) == 1  # nothing new, nothing sent


async def test_a_full_batch_commits_at_once_and_zero_interval_commits_each() -> None:
    kafka = FakeKafkaConsumer()
    committer = OffsetCommitter(interval_s=60, batch=2)
    await committer.mark(Msg(Record("t", 0, 1), kafka))  # type: ignore[arg-type]
    await committer.mark(Msg(Record("t", 0, 2), kafka))  # type: ignore[arg-type]
    assert kafka.commits == [{TopicPartition("t", 0): 3}]
    each = OffsetCommitter(interval_s=0)
    await each.mark(Msg(Record("t", 0, 4), kafka))  # type: ignore[arg-type]
    assert kafka.commits[-1] == {TopicPartition("t", 0): 5}


async def test_a_failed_commit_is_dropped_not_raised_and_stop_flushes() -> None:
    failing = FakeKafkaConsumer(fail=True)
    committer = OffsetCommitter(interval_s=60, batch=100)
    await committer.mark(Msg(Record("t", 0, 1), failing))  # type: ignore[arg-type]
    await committer.flush()  # redelivery + inbox make this safe: no exception
    kafka = FakeKafkaConsumer()
    await committer.mark(Msg(Record("t", 0, 2), kafka))  # type: ignore[arg-type]
    committer.start()
    await committer.stop()
    assert kafka.commits == [{TopicPartition("t", 0): 3}]
