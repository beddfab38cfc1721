"""Reliability, computed: which flows a fault may touch (the blast radius) and whether a run kept to it.

Pure (no I/O): `ambit chaos` (measures) and `ambit analyze` (predicts) share it. Modules: ``flows``
(the records: the cluster's layout as flows see it, a fault's observed timeline, one request's
observation), ``predict`` (the prediction), ``verdict`` (observations against a prediction).
"""
