#!/usr/bin/env bash
# Make .venv with lmlab and its dependencies. `--dev` adds the test tools.
# torch is pinned to 2.13.0: a CPU machine here has that CPU build on local disk; on a GPU machine
# the same pin pulls the CUDA build from the package index. Set LMLAB_TORCH to choose another spec.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --disable-pip-version-check -q "${LMLAB_TORCH:-torch==2.13.0}"
fi
.venv/bin/python -m pip install --disable-pip-version-check -q -e ".${extras}"
# --dev: headless Chromium for the playground-page test (it skips without one), where apt can install it:
# once, about 100 s and 113 MB on a Debian machine; LMLAB_NO_CHROMIUM=1 skips this.
if [ -n "$extras" ] && [ -z "${LMLAB_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the playground-page test will be skipped" >&2
fi
echo "lmlab is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
