#!/usr/bin/env bash
# The tool-cache key of a `version: source` build of the repository at $1:
# a hash of what the CLI is built from, as committed (unchanged by a bump
# commit; a different key whenever the CLI's sources change).
set -euo pipefail
git -C "$1" ls-tree HEAD -- Cargo.toml Cargo.lock cli rollout-controller 2>/dev/null | sha256sum | cut -c1-16
