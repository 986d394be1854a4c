#!/usr/bin/env bash
# The test suite as two pytest processes side by side (what `make test` runs):
#   cluster  the tests marked slurm or deepspeed, one at a time: they share the one local Slurm cluster
#            (one of them stops its controller, others count its slots); most of their time is spent
#            waiting for Slurm; their models are tiny;
#   rest     everything else, mostly short and CPU-bound, in the meantime, and the one test marked
#            realsize (XLM-R Large's width, up to 11.5 GiB): the only large process on the machine at a
#            time, and the sides' times stay even (docs/benchmarks.md, "The test suite").
# On 2 cores the suite takes about the longer side's time, not the sum (docs/benchmarks.md, "The test suite").
# Arguments go to both pytest processes (e.g. `-x`, `-k name`, a test file); a side that selects no test
# (pytest's exit status 5) counts as passed. Select by marker with pytest itself, not here (-m is ours).
# The cluster side's output follows the rest's.
# Usage: scripts/run-tests.sh [PYTEST_ARGS...]   (run from the project root, Slurm's env.sh sourced)
set -uo pipefail
python=${PYTHON:-.venv/bin/python}
basetemp=$(mktemp -d "${TMPDIR:-/tmp}/hpcxlt-tests.XXXXXX")
cluster_log="$basetemp/cluster.log"
# -p no:cacheprovider on one side: the two would otherwise write .pytest_cache at the same time
"$python" -m pytest -m "(slurm or deepspeed) and not realsize" --basetemp "$basetemp/cluster" -p no:cacheprovider \
	--durations=15 "$@" >"$cluster_log" 2>&1 &
cluster_pid=$!
"$python" -m pytest -m "(not slurm and not deepspeed) or realsize" --basetemp "$basetemp/rest" --durations=10 "$@"
rest_status=$?
wait "$cluster_pid"
cluster_status=$?
echo
echo "==================== the Slurm and DeepSpeed tests (run beside the rest) ===================="
cat "$cluster_log"
passed() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }
if passed "$rest_status" && passed "$cluster_status" && ! { [ "$rest_status" -eq 5 ] && [ "$cluster_status" -eq 5 ]; }; then
	rm -rf "$basetemp"
	exit 0
fi
echo "scripts/run-tests.sh: pytest exit status ${rest_status} (the rest), ${cluster_status} (Slurm and DeepSpeed); their files are kept in $basetemp" >&2
if ! passed "$rest_status"; then exit "$rest_status"; fi
if ! passed "$cluster_status"; then exit "$cluster_status"; fi
exit 5
