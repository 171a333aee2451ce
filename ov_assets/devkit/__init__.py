"""Demo and test support: the synthetic PQR generator, the replica portal, the servers. Never imported by the runtime layers."""
