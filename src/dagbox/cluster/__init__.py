"""Benches past one machine: each run on one node of a Ray cluster (docs/cluster.md).

The driver (where ``dagbox bench --cluster`` runs) keeps the bench: the jobs, the
results, the terminal. Each node runs a :class:`~dagbox.cluster.node.NodeAgent`, a Ray
actor that runs whole runs through the ordinary engine against the node's own container
engine, and hands back their events as they happen and their records when they end.
Ray places the agents and tells the driver when a node is lost; dagbox adds no
coordinator of its own. Nothing here is imported unless a bench names a cluster.
"""
