#!/usr/bin/env bash
# One call on the lent GPU machine, through the device tool (see models/GPU.md):
#   bash models/gpu_call.sh round       # the shipped generator trained further (models/gpu_round.yaml), to the call's end; carry .whl
#   bash models/gpu_call.sh round-test  # its test, at once on the still-warm machine: both models on seeds 15-19, compared
#   bash models/gpu_call.sh all         # the gpu profile's GPU half: scenes + VQ-VAE + generator, to the call's end; carry .whl
#   bash models/gpu_call.sh generator   # the same
#   bash models/gpu_call.sh detectors   # scenes + both YOLO detectors (time-limited) + their images/s, ~8 min; carry .whl
#   bash models/gpu_call.sh bench       # ITHQ-shaped sampling, ours vs diffusers (TF32) + FLOP floor; carry .whl
#   bash models/gpu_call.sh bench-bf16  # ours in bf16, then bf16 + torch.compile; carry .whl
#   bash models/gpu_call.sh bench-quick # issue 8's headline alone (batch 8, 100 steps, guided, TF32): fits the
#                                       # ~3 min a session has left after `all`, on the still-warm machine
# Everything worth keeping goes to $OUT (at most 8 files of 16 MiB: big parts are split; `all` writes 5).
# Every part needs .whl (generation.data imports albumentations). The detectors need no GPU: they
# train here on the CPU (`build_demo --profile gpu`); run beside the generator they halved its speed.
set -euo pipefail
# the call's end (GENDET_CALL_SECONDS after its start: 540, for a call given timeout_s 560 that
# leaves ~4 min of a session's 15 for bench-quick on the warm machine), less a minute for the
# packing: the generator trains until then (--stop-by), whatever the machine's speed
GENDET_STOP_BY=${GENDET_STOP_BY:-$(( $(date +%s) + ${GENDET_CALL_SECONDS:-540} - 60 ))}
export GENDET_STOP_BY
part=${1:?round, round-test, all, generator, detectors, bench, bench-bf16 or bench-quick}
: "${OUT:?run this through the device tool, which sets OUT}"
export PYTHONUNBUFFERED=1
# GENDET_DRY=1: a dry run of the same steps here (smoke profile, CPU, this venv, no wheels)
if [ -n "${GENDET_DRY:-}" ]; then profile=smoke device=cpu gen_device=cpu py=.venv/bin/python; else profile=gpu device=0 gen_device=cuda py=$(command -v python3); fi  # a path: the function below must not call itself
python3() { "$py" "$@"; }
if [ -z "${GENDET_DRY:-}" ] && compgen -G ".whl/*/*.whl" > /dev/null; then  # packages the GPU image lacks (models/device_wheels.sh)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*/*.whl
    export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } > "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" >> "$OUT/gpu.txt"
work=${GENDET_RUNS:-runs}/demo_$profile  # GENDET_RUNS: another runs folder (the dry-run test)

generator_part() {  # scenes + VQ-VAE + generator, packed as generator.tar.*; returns 1 when a step fails
    python3 -m models.build_demo --profile "$profile" --device "$device" --work "$work" --until generator 2>&1 \
        | tee -a "$OUT/build.log" || return 1
    rm -rf /tmp/pack && mkdir -p /tmp/pack/t2i /tmp/pack/vqvae && cp -r "$work/t2i/pipeline" /tmp/pack/t2i/ &&
    python3 -m models.half /tmp/pack/t2i/pipeline &&  # float16 storage: fits $OUT, same draws (tests/test_half.py)
    cp "$work"/vqvae/*.json* /tmp/pack/vqvae/ &&  # its numbers (its weights are in the pipeline)
    cp -r "$work/t2i/samples" "$work/t2i/log.jsonl" /tmp/pack/t2i/ &&
    cp "$work/t2i.yaml" "$work/times.json" /tmp/pack/ && cp "$OUT/gpu.txt" /tmp/pack/hardware.txt &&
    tar cf - -C /tmp/pack . | split -b 15m - "$OUT/generator.tar."
}

round_part() {  # models/gpu_round.yaml on new scenes, packed as round.tar.*; returns 1 when a step fails
    local rw=${GENDET_RUNS:-runs}/gpu_round n=60000 limit=(--stop-by "$GENDET_STOP_BY")
    if [ -n "${GENDET_DRY:-}" ]; then n=40 limit=(--stop-by "$(( $(date +%s) + 15 ))"); fi  # the dry run: a step or two
    mkdir -p "$rw"
    { python3 -m datasets.scenes --n "$n" --size 128 --seed 9 --quiet --workers "$(nproc)" --backgrounds plain \
        --min-object 0.375 --out "$rw/scenes" &&
      python3 -m generation.train --config models/gpu_round.yaml --data "$rw/scenes" --out "$rw/t2i" \
        --device "$gen_device" "${limit[@]}" --schedule-by-time --quiet; } 2>&1 | tee -a "$OUT/round.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] && [ -f "$rw/t2i/pipeline/pipeline.json" ] || return 1
    rm -rf /tmp/pack_round && mkdir -p /tmp/pack_round && cp -r "$rw/t2i/pipeline" /tmp/pack_round/ &&
    python3 -m models.half /tmp/pack_round/pipeline &&  # float16 storage: fits $OUT, same draws (tests/test_half.py)
    rm -rf "$rw/candidate" && cp -r /tmp/pack_round/pipeline "$rw/candidate" &&  # what round-test judges: what comes back
    cp "$rw/t2i/log.jsonl" "$rw/scenes/meta.json" /tmp/pack_round/ && cp "$OUT/gpu.txt" /tmp/pack_round/hardware.txt &&
    tar cf - -C /tmp/pack_round . | split -b 15m - "$OUT/round.tar."
}

round_test_part() {  # the round's test (models/GPU.md), on the still-warm machine: the default suite's images of
    # seeds 15-19 at 4 a prompt are one run at seed 3 with 20 a prompt; both models, then the paired comparison
    local rw=${GENDET_RUNS:-runs}/gpu_round eyes=catdog=models/demo/catdog.pt,face=models/demo/face.pt
    local args=(--suite default --images-per-prompt 20 --seed 3 --steps 50 --guidance 3)
    if [ -n "${GENDET_DRY:-}" ]; then args=(--suite smoke --images-per-prompt 2 --seed 0 --steps 2 --guidance 3); fi
    [ -f "$rw/candidate/pipeline.json" ] || { echo "no $rw/candidate: run the round call first, on this machine" >&2; return 1; }
    for m in base:models/demo/generator cand:"$rw/candidate"; do
        python3 -m evaluation.run --model "${m#*:}" --detectors "$eyes" "${args[@]}" --device "$gen_device" \
            --out "$rw/test_${m%%:*}" --quiet 2>&1 | tee -a "$OUT/round_test.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
        cp "$rw/test_${m%%:*}/results.jsonl" "$OUT/results_${m%%:*}.jsonl"
    done
    python3 -m evaluation.compare "$rw/test_base" "$rw/test_cand" --json-out "$OUT/round_test.json" 2>&1 \
        | tee -a "$OUT/round_test.log"
    [ "${PIPESTATUS[0]}" -eq 0 ]
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
generator|all)  # a drawn session has 15 minutes of device time: one 10-minute call
    generator_part || {
        echo "generator failed:" >&2; tail -30 "$OUT/build.log" >&2
        # what it got to, for the next try: the VQ-VAE's numbers and the trainer's log, if written
        for f in "$work/vqvae/metrics.jsonl" "$work/t2i/log.jsonl"; do if [ -f "$f" ]; then cp "$f" "$OUT/"; fi; done
        exit 1; }
    ;;
round)  # the first call of a drawn session (models/GPU.md)
    round_part || {
        echo "round failed:" >&2; tail -30 "$OUT/round.log" >&2
        if [ -f "${GENDET_RUNS:-runs}/gpu_round/t2i/log.jsonl" ]; then cp "${GENDET_RUNS:-runs}/gpu_round/t2i/log.jsonl" "$OUT/"; fi
        exit 1; }
    ;;
round-test)  # call 2, at once (models/GPU.md)
    round_test_part || { echo "round-test failed:" >&2; tail -30 "$OUT/round_test.log" >&2; exit 1; } ;;
detectors) detectors_part "$work" ;;
bench)  # ours vs diffusers, same random ITHQ-shaped weights; the issue-8 bar is batch 8, 100 steps
    python3 -m benchmarks.sampling --shape ithq --device cuda --guidance 5 --floor --batch 8 1 --steps 100 \
        --repeats 2 --tf32 2>&1 | tee "$OUT/bench_tf32.txt"
    python3 -m benchmarks.flops --preset ithq --batch 1 8 --dtype bfloat16 2>&1 | tee "$OUT/flops.txt"
    ;;
bench-quick)  # the issue-8 bar's one setting, one timed run each after the warm-up
    shape=ithq bench_device=cuda
    if [ -n "${GENDET_DRY:-}" ]; then shape=tiny bench_device=cpu; fi  # the dry run: a tiny shape on the CPU
    python3 -m benchmarks.sampling --shape "$shape" --device "$bench_device" --guidance 5 --floor --batch 8 \
        --steps 100 --repeats 1 --tf32 2>&1 | tee "$OUT/bench_quick.txt"
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
