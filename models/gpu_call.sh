#!/usr/bin/env bash
# One call on the lent GPU machine, through the device tool (see models/GPU.md):
#   bash models/gpu_call.sh generator   # scenes + VQ-VAE + generator (time-limited), ~9 min
#   bash models/gpu_call.sh detectors   # scenes + both YOLO detectors (time-limited) + their images/s, ~8 min; carry .whl
#   bash models/gpu_call.sh bench       # ITHQ-shaped sampling, ours vs diffusers (TF32) + FLOP floor; carry .whl
#   bash models/gpu_call.sh bench-bf16  # ours in bf16, then bf16 + torch.compile; carry .whl
# Everything worth keeping goes to $OUT (at most 8 files of 16 MiB: big parts are split).
set -euo pipefail
part=${1:?generator, detectors, bench or bench-bf16}
: "${OUT:?run this through the device tool, which sets OUT}"
export PYTHONUNBUFFERED=1
# GENDET_DRY=1: a dry run of the same steps here (smoke profile, CPU, this venv, no wheels)
if [ -n "${GENDET_DRY:-}" ]; then profile=smoke device=cpu py=.venv/bin/python; else profile=gpu device=0 py=python3; fi
python3() { "$py" "$@"; }
if [ -z "${GENDET_DRY:-}" ] && compgen -G ".whl/*/*.whl" > /dev/null; then  # packages the GPU image lacks (models/device_wheels.sh)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*/*.whl
    export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } > "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$OUT/gpu.txt"
work=runs/demo_$profile
case $part in
generator)
    python3 -m models.build_demo --profile "$profile" --device "$device" --until generator 2>&1 | tee "$OUT/build.log"
    rm -rf /tmp/pack && mkdir -p /tmp/pack/t2i && cp -r "$work/t2i/pipeline" /tmp/pack/t2i/
    python3 -m models.half /tmp/pack/t2i/pipeline  # float16 storage: fits $OUT, same draws (tests/test_half.py)
    cp -r "$work/vqvae" /tmp/pack/ && rm -rf /tmp/pack/vqvae/checkpoint
    cp -r "$work/t2i/samples" "$work/t2i/log.jsonl" /tmp/pack/t2i/
    cp "$work/t2i.yaml" "$work/times.json" /tmp/pack/ && cp "$OUT/gpu.txt" /tmp/pack/hardware.txt
    tar cf - -C /tmp/pack . | split -b 15m - "$OUT/generator.tar."
    ;;
detectors)
    python3 -m models.build_demo --profile "$profile" --device "$device" --only scenes,catdog,face \
        --until face 2>&1 | tee "$OUT/build.log"
    cp "$OUT/gpu.txt" "$work/hardware.txt"
    for task in catdog face; do  # inference images/s at batch 1 and 32 (issue 4's GPU note)
        python3 -m benchmarks.detection_speed --model "$work/$task/best.pt" --data "$work/scenes" --batch 1 32 \
            --device "$device" --json-out "$work/$task/speed.json" 2>&1 | tee -a "$OUT/detection_speed.txt"
    done
    tar cf - -C "$work" catdog/best.pt catdog/metrics.json catdog/README.md catdog/curves.png catdog/speed.json \
        face/best.pt face/metrics.json face/README.md face/curves.png face/speed.json times.json hardware.txt \
        | split -b 15m - "$OUT/detectors.tar."
    ;;
bench)  # ours vs diffusers, same random ITHQ-shaped weights; the issue-8 bar is batch 8, 100 steps
    python3 -m benchmarks.sampling --shape ithq --device cuda --guidance 5 --floor --batch 8 1 --steps 100 \
        --repeats 2 --tf32 2>&1 | tee "$OUT/bench_tf32.txt"
    python3 -m benchmarks.flops --preset ithq --batch 1 8 --dtype bfloat16 2>&1 | tee "$OUT/flops.txt"
    ;;
bench-bf16)  # ours alone: bf16 autocast, then bf16 + torch.compile
    b=(python3 -m benchmarks.sampling --shape ithq --device cuda --guidance 5 --floor --only ours --steps 100
       --repeats 2 --dtype bfloat16)
    "${b[@]}" --batch 1 8 2>&1 | tee "$OUT/bench_bf16.txt"
    "${b[@]}" --batch 8 --compile 2>&1 | tee "$OUT/bench_compile.txt"
    ;;
*)
    echo "unknown part $part" >&2; exit 2 ;;
esac
ls -la "$OUT"
