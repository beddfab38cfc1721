"""`ambit chaos`: fault experiments on a running cluster, measured against a computed prediction."""
