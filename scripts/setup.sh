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
# GNU Unifont (Debian's fonts-unifont), the paper's font for frozen glyph embeddings: without it the glyph
# renderer falls back to matplotlib's DejaVu fonts and draws most non-Latin scripts as hex boxes.
if [ ! -f /usr/share/fonts/opentype/unifont/unifont.otf ] && [ ! -f /usr/share/fonts/truetype/unifont/unifont.ttf ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-unifont >/dev/null) \
      || echo "warning: could not install fonts-unifont; glyph embeddings will use the DejaVu fallback" >&2
  else
    echo "note: GNU Unifont not found; install it (sudo apt-get install fonts-unifont) or pass its .otf files with model.glyph_font" >&2
  fi
fi
echo "lmlab is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
