#!/usr/bin/env bash
# `make chaos`: the full chaos suite (`ambit chaos suite --runs 3`) on a 3-node cluster running Istio's
# bookinfo and curl samples in ambient mode, with a 2-replica waypoint bound to the reviews Service.
# Extra arguments go to `ambit chaos suite` (e.g. --only node-reboot).
# The cluster is taken down at the end, even on failure; the report stays in $CHAOS_REPORT.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CHAOS_CLUSTER:-chaos}
RUNS=${CHAOS_RUNS:-3}
REPORT=${CHAOS_REPORT:-chaos-report}
SAMPLES=${SAMPLES:-../shared/samples/istio}
AMBIT=(.venv/bin/ambit --cluster "$CLUSTER")

# The CA's fault switch for ca-down; 5-minute certificates, refreshed every ~2.5 minutes, so the control
# plane's 120 s outage and the CA's 45 s refuse real refreshes, within the 150 s outage tolerance.
"${AMBIT[@]}" up --nodes 3 --test-fault-endpoints --workload-cert-ttl 5m --outage-tolerance 150s
trap '"${AMBIT[@]}" down' EXIT
"${AMBIT[@]}" apply -f "$SAMPLES/bookinfo.yaml" -f "$SAMPLES/curl.yaml"
"${AMBIT[@]}" label ns default istio.io/dataplane-mode=ambient --overwrite
"${AMBIT[@]}" waypoint apply -n default --replicas 2 --wait --timeout 120
"${AMBIT[@]}" label svc reviews istio.io/use-waypoint=waypoint --overwrite
"${AMBIT[@]}" chaos suite --runs "$RUNS" --report "$REPORT" "$@"
