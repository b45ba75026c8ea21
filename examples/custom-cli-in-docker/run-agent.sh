#!/bin/sh
# A wrapper that turns any agent CLI into a dagbox provider: `run-agent.sh --task TEXT [flags]`.
# It logs what it runs to stderr, then hands the task to $AGENT_CLI (aider by default).
set -eu
task=""
if [ "${1:-}" = --task ]; then task=$2; shift 2; fi
cli=${AGENT_CLI:-aider}
echo "run-agent: $cli, $# extra flags" >&2
exec "$cli" --message "$task" "$@"
