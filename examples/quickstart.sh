#!/usr/bin/env bash
# The main job on local defaults: no AWS account, no cluster, no GitHub.
#
# What a release pipeline does, against throw-away local stand-ins: a
# distribution registry in place of ECR, a bare repository in place of the
# GitOps repository.
#   1. build the backend image (daemonless buildah) and push it;
#   2. build it again unchanged: reused, nothing built, nothing uploaded;
#   3. bump the staging overlay to the pushed digest, commit, push.
# It prints the resulting commit as the remote sees it.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup   # the registry and buildah, if missing
cargo build --quiet -p gantry
gantry="$PWD/target/debug/gantry"

work=$(mktemp -d "${TMPDIR:-/tmp}/gantry-quickstart.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YAML
registry_bin=$(command -v docker-registry || echo /usr/bin/docker-registry)
"$registry_bin" serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# buildah keeps its storage in the work directory; chroot isolation needs no
# privileges, so this also runs inside containers.
cat > "$work/storage.conf" <<TOML
[storage]
driver = "vfs"
graphroot = "$work/buildah/root"
runroot = "$work/buildah/run"
TOML
export CONTAINERS_STORAGE_CONF="$work/storage.conf" BUILDAH_ISOLATION=chroot

mkdir -p "$work/backend"
printf 'FROM scratch\nCOPY version.txt /version.txt\n' > "$work/backend/Dockerfile"
echo "backend 1.5.0" > "$work/backend/version.txt"
repo="127.0.0.1:$port/backend"

echo "\$ gantry image build backend --push --to $repo --insecure --tag 1.5.0"
image=$(cd "$work" && "$gantry" image build backend --push --to "$repo" --insecure --tag 1.5.0 --no-git-tags)
echo "$image"
echo
echo "\$ gantry image build backend --push --to $repo --insecure --tag 1.5.0   # unchanged"
(cd "$work" && "$gantry" image build backend --push --to "$repo" --insecure --tag 1.5.0 --no-git-tags)
echo

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

spec="backend=$repo:1.5.0@${image#*@}"
echo "\$ gantry bump -f overlays/staging/kustomization.yaml -i '$spec' --commit --push"
GITHUB_ACTOR=${GITHUB_ACTOR:-release-pipeline} \
  "$gantry" bump -f overlays/staging/kustomization.yaml -i "$spec" --commit --push

echo
echo "The remote's new commit ($work/gitops.git):"
git --no-pager --git-dir="$work/gitops.git" show --stat --patch --format='commit %H%nAuthor: %an <%ae>%n%n    %s%n' main
