#!/usr/bin/env bash
# Put what a models/gpu_call.sh call brought back (the device tool's files_at folder) into
# runs/demo_<profile>/, where `python -m models.build_demo --profile <profile>` continues (a `round` call's
# pipeline into runs/gpu_round/t2i/, for its test: models/GPU.md).
#   bash models/gpu_unpack.sh /work/.device/.../files [gpu]
set -euo pipefail
from=${1:?the folder holding generator.tar.*, detectors.tar.* or round.tar.*}
work=${GENDET_RUNS:-runs}/demo_${2:-gpu}
if compgen -G "$from/round.tar.*" > /dev/null; then  # `gpu_call.sh round`: its own folder, runs/gpu_round/t2i
    dest=${GENDET_RUNS:-runs}/gpu_round/t2i
    rm -rf "$dest" && mkdir -p "$dest"
    cat "$from/round.tar."* | tar xf - -C "$dest"
    echo "unpacked round into $dest"
fi
for kind in generator detectors; do
    if compgen -G "$from/$kind.tar.*" > /dev/null; then
        mkdir -p "$work"  # only for these: a round call's folder leaves runs/demo_<profile> alone
        tmp=$(mktemp -d)
        cat "$from/$kind.tar."* | tar xf - -C "$tmp"
        # stage times add up over calls (a cold machine's times.json holds only its own stages)
        python3 -c 'import json, sys, pathlib
old, new = (pathlib.Path(p) for p in sys.argv[1:])
times = json.loads(old.read_text()) if old.is_file() else {}
times.update(json.loads(new.read_text()) if new.is_file() else {})
old.write_text(json.dumps(times, indent=1))' "$work/times.json" "$tmp/times.json"
        rm -f "$tmp/times.json"
        cp -r "$tmp"/. "$work"/ && rm -rf "$tmp"
        # the commands that ran there, for the card (models.model_card reads build.log's "$ " lines)
        log=$from/build.log && if [ "$kind" = detectors ]; then log=$from/build_detectors.log; fi
        if [ -f "$log" ]; then grep '^\$ ' "$log" >> "$work/build.log" || true; fi
        echo "unpacked $kind into $work"
    fi
done
