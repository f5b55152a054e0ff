# Sourced by the build scripts. build_lock DIR holds DIR.lock until the
# script exits: one build of a tool runs at a time, and a test that needs a
# tool scripts/test.sh is still building waits for the lock
# (internal/testbed waitBuilt) instead of failing.
build_lock() {
	mkdir -p "$(dirname "$1")"
	exec 9>>"$1.lock"
	flock 9
}

# The test bed's tools (pulumi, the workloads' programs, which the demo
# farm runs too) are built without optimisation or inlining: building
# them is a large part of a cold run's CPU, running them well under a
# CPU-minute of it. CoreDNS, for one, compiles from an empty cache in 14%
# less CPU so (224 against 260 CPU-s). The standard library keeps the
# compiler's defaults, so the tools share its one compile with
# phonefarm's packages. k3s, the e2e tests and tailscale (the tailnet
# tests wait on it) keep them too. TOOL_GCFLAGS= builds the tools
# optimised.
TOOL_GCFLAGS=${TOOL_GCFLAGS-all=-N -l}
tool_gcflags=(-gcflags="$TOOL_GCFLAGS" -gcflags=std=)
