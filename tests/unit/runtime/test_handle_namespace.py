"""`ClusterHandle.apply(..., namespace=NS)` places objects as `ambit apply -n NS` does."""

from __future__ import annotations

import pytest

from ambit.resources import parse_manifests
from ambit.runtime.handle import HandleError, _in_namespace

SAMPLE = """apiVersion: v1
kind: ServiceAccount
metadata:
  name: curl
---
apiVersion: v1
kind: Namespace
metadata:
  name: mesh
"""


def test_an_object_naming_no_namespace_goes_to_the_given_one() -> None:
    account, namespace = parse_manifests(SAMPLE, "test")
    assert account["metadata"]["namespace"] == "default"  # parsing defaults it
    assert _in_namespace(account, "mesh")["metadata"]["namespace"] == "mesh"
    assert _in_namespace(namespace, "mesh") == namespace  # cluster-scoped: untouched


def test_an_object_in_another_namespace_is_an_error() -> None:
    [account, _] = parse_manifests(SAMPLE.replace("name: curl", "name: curl\n  namespace: other"), "test")
    assert _in_namespace(account, "other") == account
    with pytest.raises(HandleError, match="other"):
        _in_namespace(account, "mesh")
