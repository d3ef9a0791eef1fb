#!/usr/bin/env bash
# Installs gantry for the composite action: a release binary checked against
# its published SHA-256, or a build from source. Puts it on GITHUB_PATH.
set -euo pipefail

cache="${RUNNER_TOOL_CACHE:-$HOME/.cache}/gantry"
if [ "$GANTRY_VERSION" = source ]; then
  # Keyed by what the CLI is built from, so a runner whose tool cache
  # outlives the job (self-hosted) never runs an older build, and a second
  # use of this action in the job (after a bump commit, too) finds this one.
  dest="$cache/source-$("$(dirname "$0")/source-key.sh" "$GANTRY_SOURCE")"
  # The workspace's target/, so a rust-cache step finds the build.
  [ -x "$dest/bin/gantry" ] || CARGO_TARGET_DIR="$GANTRY_SOURCE/target" \
    cargo install --quiet --locked --path "$GANTRY_SOURCE/cli" --root "$dest"
  echo "$dest/bin" >> "$GITHUB_PATH"
  "$dest/bin/gantry" --version
  exit 0
fi

case "$(uname -m)" in
  x86_64) target=x86_64-unknown-linux-gnu ;;
  aarch64) target=aarch64-unknown-linux-gnu ;;
  *) echo "::error::gantry has no release binary for $(uname -m); use version: source"; exit 1 ;;
esac
tag="$GANTRY_VERSION"
if [ "$tag" = latest ]; then
  tag=$(gh release view --repo "$GANTRY_REPOSITORY" --json tagName --jq .tagName)
fi
dest="$cache/$tag"
if [ ! -x "$dest/gantry" ]; then
  work=$(mktemp -d)
  asset="gantry-$tag-$target.tar.gz"
  gh release download "$tag" --repo "$GANTRY_REPOSITORY" --dir "$work" \
    --pattern "$asset" --pattern "$asset.sha256"
  (cd "$work" && sha256sum --check --strict "$asset.sha256")
  mkdir -p "$dest"
  tar -xzf "$work/$asset" -C "$dest" gantry
  rm -rf "$work"
fi
echo "$dest" >> "$GITHUB_PATH"
"$dest/gantry" --version
