"""Demo and test support: the synthetic PQR generator, the replica portal and failpoints. Never imported by the runtime layers."""
