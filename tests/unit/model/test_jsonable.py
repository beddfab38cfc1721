"""jsonable: model values as the plain JSON the admin port serves."""

from __future__ import annotations

import json

from ambit.model.jsonable import jsonable
from ambit.model.workload import HealthStatus, TunnelProtocol, Workload

WL = Workload(
    uid="u1",
    name="web-0",
    namespace="default",
    service_account="web",
    node="node1",
    addresses=("10.244.1.2",),
    tunnel_protocol=TunnelProtocol.HBONE,
)


def test_jsonable_model_values() -> None:
    view = jsonable({"u1": WL})
    json.dumps(view)
    assert view["u1"]["addresses"] == ["10.244.1.2"]
    assert view["u1"]["status"] == HealthStatus.HEALTHY.value
