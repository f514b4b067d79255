#!/usr/bin/env bash
# Run the README quickstart unattended on LFW: check, train, enroll, match,
# verify, evaluate. Every output lands in one folder, with the time of each step.
#
#   bash benchmarks/quickstart.sh [--quick] [OUT]
#
# A finished training run already in OUT is reused; the other steps run again.
# LFW comes from $DCAL_LFW (the folder containing images_deepfunneled/ and the
# pair files), else $DCAL_TEST_DATA/lfw. --quick trains the tiny preset for a
# few steps on 40 people and enrolls 30, a smoke check of a few minutes. The
# full run trains the cpu-small preset on every peopleDevTrain.txt person.
set -euo pipefail

quick=0
out=""
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) out="$arg" ;;
    esac
done
out="${out:-quickstart-out}"
lfw="${DCAL_LFW:-${DCAL_TEST_DATA:-}/lfw}"
if [ ! -d "$lfw/images_deepfunneled" ]; then
    echo "LFW not found at '$lfw': set DCAL_LFW to the folder holding images_deepfunneled/ and pairs.txt" >&2
    exit 2
fi
images="$lfw/images_deepfunneled"
twins="$lfw/twin_pairs_infor.json"
[ -f "$twins" ] || twins="$(cd "$(dirname "$0")/.." && pwd)/data/lfw_twin_pairs_infor.json"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
mkdir -p "$out"
timings="$out/timings.tsv"
[ -f "$timings" ] || printf 'step\tseconds\n' > "$timings"

step() {  # step NAME COMMAND...: run, log stdout+stderr, record wall time
    local name="$1"; shift
    local start=$SECONDS
    echo "== $name: $*" | tee -a "$out/quickstart.log"
    "$@" > "$out/$name.out" 2> "$out/$name.err" || { echo "step $name failed; see $out/$name.err" >&2; tail -20 "$out/$name.err" >&2; exit 1; }
    printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$timings"
}

train_people="$lfw/peopleDevTrain.txt"
test_people="$lfw/peopleDevTest.txt"
if [ "$quick" = 1 ]; then
    # The 40 DevTrain people with the most images, in LFW's people-file format.
    { echo 40; tail -n +2 "$lfw/peopleDevTrain.txt" | sort -k2,2nr | awk "NR <= 40"; } > "$out/people_train_quick.txt"
    train_people="$out/people_train_quick.txt"
    train_args=(--preset tiny --max-steps 20)
    # 28 DevTest people with the most images, plus the Sheens (father and son) so the twin report shows.
    { echo 30; tail -n +2 "$lfw/peopleDevTest.txt" | sort -k2,2nr | awk "NR <= 28";
      printf 'Martin_Sheen\t2\nCharlie_Sheen\t1\n'; } > "$out/people_test_quick.txt"
    test_people="$out/people_test_quick.txt"
    holdout_args=(--keep-small)
    eval_args=(--max-pairs 500)
else
    train_args=(--preset cpu-small)
    holdout_args=(--keep-small)
    eval_args=()
fi

step 1-check dcal-data check "$images" --twins "$twins" --json
# A finished training run in OUT is reused, so an interrupted quickstart picks up after it.
if [ -f "$out/run/best/config.json" ]; then
    echo "== 2-train: reusing $out/run" | tee -a "$out/quickstart.log"
else
    step 2-train dcal-train --data "$images" --twins "$twins" --people "$train_people" --out "$out/run" \
        "${train_args[@]}" --nproc-per-node 2 --device cpu
fi
step 3-holdout dcal-data holdout "$images" --people "$test_people" --gallery-dir "$out/gallery_faces" \
    --probes-dir "$out/probes" "${holdout_args[@]}" --json
step 4-enroll dcal-enroll "$out/gallery_faces" --gallery "$out/gallery" --checkpoint "$out/run" --twins "$twins" --json

probe=$(find "$out/probes" -type l | sort | head -1)
sheen_probe=$(find "$out/probes/Martin_Sheen" -type l 2>/dev/null | head -1 || true)
step 5-match dcal-match "$probe" ${sheen_probe:+"$sheen_probe"} --gallery "$out/gallery" --json
step 6-verify-same dcal-verify "$images/Ralf_Schumacher/Ralf_Schumacher_0001.jpg" \
    "$images/Ralf_Schumacher/Ralf_Schumacher_0002.jpg" --checkpoint "$out/run" --json
step 7-verify-twins dcal-verify "$images/Tia_Mowry/Tia_Mowry_0001.jpg" "$images/Tamara_Mowry/Tamara_Mowry_0001.jpg" \
    --checkpoint "$out/run" --json
step 8-eval dcal-eval --checkpoint "$out/run" --data "$images" --twins "$twins" --protocol lfw-view1 \
    --out "$out/eval" "${eval_args[@]}" --json

echo "outputs in $out; step times:"
column -t "$timings" 2>/dev/null || cat "$timings"
