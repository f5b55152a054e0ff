#!/usr/bin/env bash
# Pod start on the demo farm with the image already on the phones: the time
# from kubectl apply to Ready for 1 pod and for 10 pods (pong, spread over
# the phones), per pod. Prints the medians and the ratio of the time per pod
# when 10 start together to one alone. Runs scripts/demo.sh first (which
# leaves the demo farm running, pong's image pulled). Needs root.
# ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
scripts/demo.sh >/dev/null
export KUBECONFIG=/var/lib/phonefarm/demo/kubeconfig
k3s=$(scripts/build-k3s.sh)
work=$(mktemp -d)
trap '"$work/kubectl" delete namespace bench-pods --ignore-not-found >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
ln -s "$k3s" "$work/kubectl"
kubectl() { "$work/kubectl" "$@"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
pods() {
	for i in $(seq "$1"); do cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: pong-$i, namespace: bench-pods, labels: {app: bench-pong}}
spec:
  terminationGracePeriodSeconds: 0
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: bench-pong}}}
  containers:
    - name: pong
      image: phonefarm.dev/examples/pong:v1
      imagePullPolicy: IfNotPresent
      readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 1}
YAML
	done
}
start() { # N: seconds from apply to N pods Ready
	kubectl create namespace bench-pods >/dev/null
	pods "$1" > "$work/pods.yaml"
	local t0; t0=$(date +%s.%N)
	kubectl apply -f "$work/pods.yaml" >/dev/null
	kubectl -n bench-pods wait --for=condition=Ready pod --all --timeout=5m >/dev/null
	local t1; t1=$(date +%s.%N)
	kubectl delete namespace bench-pods --wait >/dev/null
	echo "$t1 - $t0" | bc -l
}
one=() ten=()
for r in $(seq "$ROUNDS"); do
	one+=("$(start 1)")
	ten+=("$(start 10)")
	printf 'round %d: 1 pod %.2fs, 10 pods %.2fs (%.2fs per pod)\n' "$r" "${one[-1]}" "${ten[-1]}" "$(echo "${ten[-1]} / 10" | bc -l)"
done
m1=$(printf '%s\n' "${one[@]}" | median) m10=$(printf '%s\n' "${ten[@]}" | median)
printf 'median: 1 pod %.2fs, 10 pods %.2fs, %.2fs per pod: per-pod ratio 10 together / 1 alone %.2f\n' "$m1" "$m10" "$(echo "$m10 / 10" | bc -l)" "$(echo "($m10 / 10) / $m1" | bc -l)"
