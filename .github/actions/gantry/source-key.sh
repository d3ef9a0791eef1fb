#!/usr/bin/env bash
# The tool-cache key of a `version: source` build of the repository at $1:
# a hash of what the CLI is built from (unchanged by a bump commit; a
# different key whenever the CLI's sources change).
set -euo pipefail
cd "$1"
sources=(Cargo.toml Cargo.lock cli rollout-controller)
if git rev-parse --verify --quiet HEAD >/dev/null 2>&1; then
  git ls-tree HEAD -- "${sources[@]}"
else
  # An action fetched as an archive (`uses: OWNER/REPO/...@REF`) has no
  # .git: hash the files themselves.
  find "${sources[@]}" -type f -not -path '*/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
fi | sha256sum | cut -c1-16
