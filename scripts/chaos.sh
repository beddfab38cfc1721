#!/usr/bin/env bash
# `make chaos`: the full chaos suite (`ambit chaos suite --runs 3`) on a 3-node cluster running Istio's
# bookinfo and curl samples in ambient mode, with a 2-replica waypoint bound to the reviews Service.
# The cluster is taken down at the end, even on failure; the report stays in $CHAOS_REPORT.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${CHAOS_CLUSTER:-chaos}
RUNS=${CHAOS_RUNS:-3}
REPORT=${CHAOS_REPORT:-chaos-report}
SAMPLES=${SAMPLES:-../shared/samples/istio}
AMBIT=(.venv/bin/ambit --cluster "$CLUSTER")

"${AMBIT[@]}" up --nodes 3
trap '"${AMBIT[@]}" down' EXIT
"${AMBIT[@]}" apply -f "$SAMPLES/bookinfo.yaml" -f "$SAMPLES/curl.yaml"
"${AMBIT[@]}" label ns default istio.io/dataplane-mode=ambient --overwrite
"${AMBIT[@]}" waypoint apply -n default --replicas 2 --wait --timeout 120
"${AMBIT[@]}" label svc reviews istio.io/use-waypoint=waypoint --overwrite
"${AMBIT[@]}" chaos suite --runs "$RUNS" --report "$REPORT" "$@"
