"""Where a pod runs: the facts about a pod that node authorization needs (node, service account, phase).

Pure value type, stdlib only. Phases are Kubernetes' ``PodPhase`` values.
"""

from __future__ import annotations

from dataclasses import dataclass

POD_PHASES = frozenset({"Pending", "Running", "Succeeded", "Failed", "Unknown"})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class PodPlacement:
    """One pod as the CA sees it: identity-relevant fields and the node it is scheduled on.

    ``node`` is ``spec.nodeName``; an empty string means the pod is not scheduled yet.
    """

    namespace: str
    name: str
    uid: str
    service_account: str
    node: str
    phase: str

    def __post_init__(self) -> None:
        if self.phase not in POD_PHASES:
            raise ValueError(
                f"pod {self.namespace}/{self.name} has phase {self.phase!r}; "
                f"expected one of {', '.join(sorted(POD_PHASES))}"
            )

    @property
    def terminated(self) -> bool:
        """True when the pod has finished (Succeeded or Failed) and holds no claim to an identity."""
        return self.phase in TERMINAL_PHASES
