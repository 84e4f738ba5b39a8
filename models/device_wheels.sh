#!/usr/bin/env bash
# The Python packages the lent GPU machine lacks (it has torch, torchvision, transformers,
# tokenizers, safetensors, opencv-headless, matplotlib, scipy, pandas, httpx; no registry),
# downloaded here as py3.12 x86-64 wheels into .whl/ (git-ignored), to be carried to it:
#   .whl/detect   ultralytics + albumentations + pycocotools and what they need (~10 MB);
#                 not polars (a 54 MB runtime): detection.train reads results.csv without it
#   .whl/interop  diffusers, for benchmarks.sampling (~6 MB)
# Versions are the ones this repository's venv is tested with. See models/GPU.md.
set -euo pipefail
cd "$(dirname "$0")/.."
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do plat+=(--platform "$p"); done
fetch() {
    local dir=$1; shift
    mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${plat[@]}" -d "$dir" "$@"
}
fetch .whl/detect ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 \
    albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16 \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 pycocotools==2.0.11
fetch .whl/interop diffusers==0.42.1
du -sh .whl/detect .whl/interop
