#!/usr/bin/env bash
# The main job on local defaults: no AWS account, no cluster, no GitHub.
#
# Creates a throw-away "GitOps repository" (a bare remote plus a CI-style
# clone) holding a kustomize overlay, then does what a release pipeline does
# after pushing an image: bump the overlay's image, commit, push. It prints
# the resulting commit as the remote sees it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p gantry
gantry="$PWD/target/debug/gantry"

work=$(mktemp -d "${TMPDIR:-/tmp}/gantry-quickstart.XXXXXX")
git init --quiet --bare -b main "$work/gitops.git"
git clone --quiet "$work/gitops.git" "$work/ci" 2>/dev/null
cd "$work/ci"
mkdir -p overlays/staging
cat > overlays/staging/kustomization.yaml <<'YAML'
# Staging overlay: `images:` is what the release pipeline bumps.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
images:
  - name: backend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend
    newTag: "1.4.0"   # set by CI
  - name: frontend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/frontend
    newTag: "2.0.0"
YAML
git add -A
git -c user.name=Platform -c user.email=platform@example.com commit --quiet -m "Add staging overlay"
git push --quiet origin main

echo "\$ gantry bump -f overlays/staging/kustomization.yaml -i 'backend=*:1.5.0' --commit --push"
GITHUB_ACTOR=${GITHUB_ACTOR:-release-pipeline} \
  "$gantry" bump -f overlays/staging/kustomization.yaml -i 'backend=*:1.5.0' --commit --push

echo
echo "The remote's new commit ($work/gitops.git):"
git --no-pager --git-dir="$work/gitops.git" show --stat --patch --format='commit %H%nAuthor: %an <%ae>%n%n    %s%n' main
