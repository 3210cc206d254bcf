"""Test code the benchmarks use too (``bench/`` imports from here, never from a test module).

* :mod:`tests.support.group_matching_exact`: the exact (OR-Tools) cohort solver;
* :mod:`tests.support.planning_oracle`: the planner's reference oracle;
* :mod:`tests.support.served`: the four services on uvicorn (SQLite, no broker);
* :mod:`tests.support.pki`: a throwaway CA and server certificate for the gateway's TLS listener.
"""
