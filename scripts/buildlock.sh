# Sourced by the build scripts. build_lock DIR holds DIR.lock until the
# script exits: one build of a tool runs at a time, and a test that needs a
# tool scripts/test.sh is still building waits for the lock
# (internal/testbed waitBuilt) instead of failing.
build_lock() {
	mkdir -p "$(dirname "$1")"
	exec 9>>"$1.lock"
	flock 9
}
