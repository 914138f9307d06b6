#!/usr/bin/env bash
# Issue #14 on a lent GPU machine (one H200, 16 cores; its python3 holds torch but not pydicom): one call makes the
# phantoms there, trains a candidate with `gru-viewer train` on CUDA and scores it on the validation sets, with
# everything that must come back written to $OUT. Data sets cannot travel (gigabytes against a 64 MiB carry), but
# `demo-data --workers` makes the very studies made here, so the validation sets are the ones docs/model.md uses.
#
# From the device tool, with the wheels of pydicom and platformdirs (the two packages this path needs that the
# device image lacks) in .whl/, a folder git ignores (`pip download --no-deps --python-version 3.12 -d .whl ...`):
#   run(command="bash tools/device_train.sh", carry=[".whl"], timeout_s=600)
# The training stops at TRAIN_BUDGET_S; its checkpoint comes back in $OUT, and a later call resumes it when it is
# carried back (e.g. copied to an ignored folder `resume/` named in carry, and RESUME_FROM=resume/FILE).
#
# Settings (environment): WIDE, CLASSIC (training studies of each family), EPOCHS ("encoder sequence finetune"),
# INIT (weights to start from; "none": from scratch), ENCODER_CHANNELS (with INIT=none: the slice CNN's widths, e.g.
# 32,64,128,256, since rc10 underfits its own training set at the default 16,32,64,128; the fresh network then reads
# slices at 256 px, the shipped model's size), VAL_FAMILY (selection set: wide, other or classic),
# DEVICE (cuda), PRECISION (bf16: the slice CNN's training passes under bfloat16 autocast), PY (python3), TRAIN_BUDGET_S (seconds the training may take), RESUME_FROM (a checkpoint to go on
# from), OUT (results; /tmp/out).
set -uo pipefail
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
WIDE=${WIDE:-600}
CLASSIC=${CLASSIC:-600}
EPOCHS=${EPOCHS:-"6 30 2"}
INIT=${INIT:-resources/models/slice_gru_default.safetensors}
VAL_FAMILY=${VAL_FAMILY:-wide}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-330}
VAL_STUDIES=${VAL_STUDIES:-100}
DATA=${DATA:-/tmp/gru-data}
mkdir -p "$OUT" "$DATA"
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/device.log"; }

if ! "$PY" -c "import pydicom, platformdirs" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl ||
    { log "no wheels in .whl/ (pydicom, platformdirs)"; exit 1; }
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
G=("$PY" -m viewer)
log "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no GPU'), $(nproc) cores"
log "torch $("$PY" -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda")')"

make_set() {  # name family studies seed matrix
  "${G[@]}" demo-data "$DATA/$1" --family "$2" --studies "$3" --seed "$4" --matrix "$5" --workers 0 >/dev/null ||
    { log "demo-data $1 failed"; exit 1; }
}
start=$(date +%s)
make_set wide_train wide "$WIDE" 601 256
make_set classic_train classic "$CLASSIC" 101 256
make_set wide_val wide "$VAL_STUDIES" 602 256
make_set other_val other "$VAL_STUDIES" 702 256
make_set classic_val classic "$VAL_STUDIES" 203 512
log "phantoms made in $(( $(date +%s) - start )) s: wide $WIDE, classic $CLASSIC, validation $VAL_STUDIES of each family"

read -r enc seq fine <<<"$EPOCHS"
init=()
[ "$INIT" != none ] && init=(--init "$INIT")
[ "$INIT" = none ] && [ -n "${ENCODER_CHANNELS:-}" ] && init=(--encoder-channels "$ENCODER_CHANNELS" --input-size 256)
fresh=(--fresh)
if [ -n "${RESUME_FROM:-}" ]; then cp "$RESUME_FROM" "$OUT/candidate.checkpoint.safetensors" && fresh=(); fi
start=$(date +%s)
timeout -s INT "$TRAIN_BUDGET_S" "${G[@]}" train "${init[@]}" --data "$DATA/wide_train" --data "$DATA/classic_train" \
  --val "$DATA/${VAL_FAMILY}_val" --encoder-epochs "$enc" --sequence-epochs "$seq" --finetune-epochs "$fine" \
  --patience 4 --seed 8 --hu-jitter 12 --noise-hu 10 --device "$DEVICE" --precision "$PRECISION" \
  --cache "$DATA/cache" --out "$OUT/candidate.safetensors" --checkpoint "$OUT/candidate.checkpoint.safetensors" \
  --model-version 1.2.0-device "${fresh[@]}" >"$OUT/train.log" 2>&1
code=$?
log "train exit $code after $(( $(date +%s) - start )) s (124/130: stopped at the budget; the checkpoint resumes it)"
rm -f "$OUT/candidate.card.md"  # made again from the card; at most 8 files come back
if [ -f "$OUT/candidate.safetensors" ]; then
  mkdir -p "$DATA/eval"
  for v in wide_val other_val classic_val; do
    "${G[@]}" evaluate --model "$OUT/candidate.safetensors" --data "$DATA/$v" --device "$DEVICE" \
      --json "$DATA/eval/$v.json" -q >"$DATA/eval/$v.txt" 2>&1
    log "$v: $(grep -E '^study AUROC' "$DATA/eval/$v.txt" | tr -s ' ')"
  done
  tar -C "$DATA/eval" -cf "$OUT/evaluations.tar" .
fi
log "done: $(ls "$OUT" | tr '\n' ' ')"
