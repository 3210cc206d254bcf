"""The proving grounds: a synthetic population driven through the gateway of the cluster
topology (``make run-cluster``) under a seeded fault schedule, then an exact checker
(``make prove``)."""
