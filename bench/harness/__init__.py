"""What the benchmark scripts share (no bench script imports another):

* :mod:`bench.harness.measure`: samples (wall, CPU, machine busy), percentiles and medians, the load
  average, worker pools, probes and run records;
* :mod:`bench.harness.infra`: Kafka and PostgreSQL, ours unless the environment names them;
* :mod:`bench.harness.kafka`: wire records, topics, offsets, batched producing;
* :mod:`bench.harness.logs`: the services' logging, formatted as in production, written nowhere;
* :mod:`bench.harness.profile`: cProfile summaries per package and function;
* :mod:`bench.harness.payloads`: events, CIWA-B items, the timer claim SQL.

``bench.machine`` (machine facts) and ``bench.report`` (writing results) sit beside it.
"""
