#!/usr/bin/env bash
# One call on the lent GPU machine, through the device tool (see models/GPU.md):
#   bash models/gpu_call.sh all         # generator and detectors side by side: the whole bundle in one call, ~9 min; carry .whl
#   bash models/gpu_call.sh generator   # scenes + VQ-VAE + generator (time-limited), ~9 min
#   bash models/gpu_call.sh detectors   # scenes + both YOLO detectors (time-limited) + their images/s, ~8 min; carry .whl
#   bash models/gpu_call.sh bench       # ITHQ-shaped sampling, ours vs diffusers (TF32) + FLOP floor; carry .whl
#   bash models/gpu_call.sh bench-bf16  # ours in bf16, then bf16 + torch.compile; carry .whl
# Everything worth keeping goes to $OUT (at most 8 files of 16 MiB: big parts are split; `all` writes 7).
set -euo pipefail
part=${1:?all, generator, detectors, bench or bench-bf16}
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
work=${GENDET_RUNS:-runs}/demo_$profile  # GENDET_RUNS: another runs folder (the dry-run test)

generator_part() {  # scenes + VQ-VAE + generator, packed as generator.tar.*
    python3 -m models.build_demo --profile "$profile" --device "$device" --work "$work" --until generator 2>&1 | tee -a "$OUT/build.log"
    rm -rf /tmp/pack && mkdir -p /tmp/pack/t2i && cp -r "$work/t2i/pipeline" /tmp/pack/t2i/
    python3 -m models.half /tmp/pack/t2i/pipeline  # float16 storage: fits $OUT, same draws (tests/test_half.py)
    cp -r "$work/vqvae" /tmp/pack/ && rm -rf /tmp/pack/vqvae/checkpoint
    cp -r "$work/t2i/samples" "$work/t2i/log.jsonl" /tmp/pack/t2i/
    cp "$work/t2i.yaml" "$work/times.json" /tmp/pack/ && cp "$OUT/gpu.txt" /tmp/pack/hardware.txt
    tar cf - -C /tmp/pack . | split -b 15m - "$OUT/generator.tar."
}

detectors_part() {  # both detectors + their images/s in work folder $1, packed as detectors.tar.*
    local dw=$1
    python3 -m models.build_demo --profile "$profile" --device "$device" --work "$dw" --only scenes,catdog,face \
        --until face 2>&1 | tee -a "$OUT/build_detectors.log"
    cp "$OUT/gpu.txt" "$dw/hardware.txt"
    for task in catdog face; do  # inference images/s at batch 1 and 32 (issue 4's GPU note)
        python3 -m benchmarks.detection_speed --model "$dw/$task/best.pt" --data "$dw/scenes" --batch 1 32 \
            --device "$device" --json-out "$dw/$task/speed.json" 2>&1 | tee -a "$OUT/build_detectors.log"
    done
    tar cf - -C "$dw" catdog/best.pt catdog/metrics.json catdog/README.md catdog/curves.png catdog/speed.json \
        face/best.pt face/metrics.json face/README.md face/curves.png face/speed.json times.json hardware.txt \
        | split -b 15m - "$OUT/detectors.tar."
}

case $part in
generator) generator_part ;;
detectors) detectors_part "$work" ;;
all)  # the whole bundle in one call: a drawn session has 15 minutes of device time, one 10-minute call
    python3 -m models.build_demo --profile "$profile" --device "$device" --work "$work" --until scenes 2>&1 | tee -a "$OUT/build.log"
    # the detectors train beside the generator (the GPU has room for both) in their own work
    # folder, so the two builds never write the same times.json; the scenes are shared
    det=${work}_detectors && rm -rf "$det" && mkdir -p "$det" && ln -s "$(realpath "$work/scenes")" "$det/scenes"
    detectors_part "$det" > /dev/null 2>> "$OUT/build_detectors.log" &  # its log: build_detectors.log
    detectors=$!
    generator_part &  # in the background too, so one part failing leaves the other to finish
    generator=$!
    failed=0
    wait "$generator" || { echo "generator failed:" >&2; tail -30 "$OUT/build.log" >&2; failed=1
        # what it got to, for the next try: the VQ-VAE's numbers and the trainer's log, if written
        for f in "$work/vqvae/metrics.jsonl" "$work/t2i/log.jsonl"; do [ -f "$f" ] && cp "$f" "$OUT/"; done; }
    wait "$detectors" || { echo "detectors failed:" >&2; tail -20 "$OUT/build_detectors.log" >&2; failed=1; }
    ls -la "$OUT"
    exit "$failed"
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
