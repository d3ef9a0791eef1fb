#!/usr/bin/env bash
# The main job on local defaults: no AWS account, no cluster, no GitHub.
#
# What a release pipeline does, against throw-away local stand-ins: a
# distribution registry in place of ECR, a bare repository in place of the
# GitOps repository (holding the example app, manifests/example).
#   1. build the backend image (daemonless buildah) and push it;
#   2. build it again unchanged: reused, nothing built, nothing uploaded;
#   3. bump the staging overlay to the pushed digest, commit, push;
#   4. render that overlay and plan the canary the pushed commit starts.
# It prints the resulting commit as the remote sees it, then the plan.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup   # the registry and buildah, if missing
# $GANTRY: a gantry already built (the test suite's); else build it.
gantry=${GANTRY:-}
if [ -z "$gantry" ]; then
  # The quickstart profile (Cargo.toml): about 3 minutes from cold on 2
  # cores, seconds once built.
  echo "Building gantry (cargo build -p gantry --profile quickstart)..."
  cargo build --quiet -p gantry --profile quickstart
  gantry="$PWD/target/quickstart/gantry"
fi

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
cp -r manifests/example/base manifests/example/overlays "$work/ci/"
root=$PWD
cd "$work/ci"
git add -A
git -c user.name=Platform -c user.email=platform@example.com commit --quiet -m "Add the webapp"
git push --quiet origin main

spec="backend=$repo:1.5.0@${image#*@}"
echo "\$ gantry bump -f overlays/staging/kustomization.yaml -i '$spec' --commit --push"
GITHUB_ACTOR=${GITHUB_ACTOR:-release-pipeline} \
  "$gantry" bump -f overlays/staging/kustomization.yaml -i "$spec" --commit --push

echo
echo "The remote's new commit ($work/gitops.git):"
git --no-pager --git-dir="$work/gitops.git" show --patch --format='commit %H%nAuthor: %an <%ae>%n%n    %s%n' main

echo
echo "\$ kubectl kustomize overlays/staging | gantry rollout plan -f -   # the canary this commit starts"
kubectl kustomize overlays/staging | "$gantry" rollout plan -f -

cat <<EOF

To go further, on a cluster with the AWS Load Balancer Controller:
  kubectl apply --server-side -k $root/manifests/controller   # the CRDs and rollout-controller
  kubectl apply -k $work/ci/overlays/staging   # what Argo CD syncs (with the Sealed Secrets and Prometheus Operator CRDs)
  $gantry rollout status backend -n webapp-staging --watch   # or: gantry rollout dashboard
EOF
