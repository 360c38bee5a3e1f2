#!/usr/bin/env bash
# Shortened GPU reproductions, as ONE call of at most 9 minutes on a lent H100/H200:
#   0. training throughput (benchmarks/throughput.py): sajax vs PyTorch eager, NumPyro SVI, hand-fused JAX
#   a. VIMCO, RWS and scheduled JSA on Mnih & Rezende's 200-200-200 SBN at K = 10 (discrete_mnist.py)
#   b. PacGAN Table 1: GAN, PacGAN2, PacGAN4 on the grid of 25 and the ring of 8 (mode_collapse.py)
#   c. IWAE Table 1 (one stochastic layer), VAE and IWAE at K = 1 and K = 50 (iwae_table1.py)
#   d. NADE and MADE, exact test NLL (autoregressive_mnist.py)
#
# On the GPU machine, from the project root:
#     source .whl/env.sh && bash benchmarks/gpu_reproductions.sh "$OUT"
# Smoke test on a CPU (tiny sizes, every job must exit 0; a few minutes on 2 cores):
#     SMOKE=1 PATH=$PWD/.venv/bin:$PATH bash benchmarks/gpu_reproductions.sh /tmp/gpu_smoke
#
# Time: every job is one process under `timeout --signal=INT --kill-after=3 LIMIT`.  Each job has a
# slot (seconds, SLOT below; the slots and the kill grace add up to the budget, 525 s by default).  A job
# may run past its slot by whatever the jobs before it left unused, never into the slots of the jobs
# after it, so the whole script ends within TOTAL_BUDGET_S even when a job hangs.  No `set -e`: a job
# that fails or is cut off is logged and the next one runs.  The sizes below are estimates from the
# H100 runs in benchmarks/results (throughput_h100, vimco_table_h100) and from the CPU runs; a job
# whose benchmark writes its table only at the end is sized to finish well inside its slot (comments).
#
# Outputs.  The device tool brings back at most 8 files from $OUT (<= 16 MiB each, <= 2 folders
# down), so the benchmarks write into a scratch folder RAW (default: a fresh /tmp/gpu_reproductions_raw.*,
# or RAW_DIR), and after every job the script refreshes three files in $OUT:
#   jobs.md          one row per job: start, end, wall seconds, time limit, exit status
#   summary.md       every table written so far (each benchmark's own markdown, with its command)
#   results.tar.gz   everything in RAW (tables .md/.json, plots .png, per-job logs, JSON-lines curves)
# A cut-off therefore loses only the job in flight; the jobs' logs hold the rows a benchmark printed
# before it was cut off (mode_collapse and autoregressive_mnist print one per method, iwae_table1 --log
# writes its curve after every chunk).
#
# Environment: SMOKE=1 (tiny sizes), JOBS="0 a b c d" (the groups to run, e.g. JOBS="b c"),
# DEVICE_LABEL (default: from nvidia-smi, e.g. "H200"), TOTAL_BUDGET_S (default 525, counted from the
# script's start, so lower it if `source .whl/env.sh` takes long; smoke 7200), DRY_RUN=1 (print each
# job's command and time limit, run nothing), PYTHON (default python3), RAW_DIR.
# Checkpoints: discrete_mnist.py and iwae_table1.py take --checkpoint-dir (resume), but it is not used:
# $OUT cannot bring checkpoints back to a later call (a fresh machine starts each one).
# Not yet done: running the jobs concurrently on the one GPU (several processes with
# XLA_PYTHON_CLIENT_PREALLOCATE=false, or replicas in one program) and measuring which packs better;
# it needs a GPU session.  The jobs run one after another.
set -uo pipefail

OUT=${1:-${OUT:-/tmp/gpu_reproductions}}
SMOKE=${SMOKE:-0}
PY=${PYTHON:-python3}
JOBS=${JOBS:-0 a b c d}
G=3                                        # seconds between SIGINT and SIGKILL
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
RAW=${RAW_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_reproductions_raw.XXXXXX")} || exit 1
mkdir -p "$RAW/logs" || exit 1
RAW=$(cd "$RAW" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1        # the project root
export PYTHONUNBUFFERED=1

if [[ $SMOKE == 1 ]]; then
    BUDGET=${TOTAL_BUDGET_S:-7200}
else
    BUDGET=${TOTAL_BUDGET_S:-525}          # 9 minutes = 540 s for the whole call; 15 s for env.sh and spare
fi

# ---- the device and its label ------------------------------------------------------------------
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
if [[ -n ${DEVICE_LABEL:-} ]]; then
    label=$DEVICE_LABEL
elif [[ $SMOKE == 1 ]]; then
    label="CPU smoke test ($(nproc) cores)"
elif [[ -n $gpu ]]; then
    label=${gpu%%,*}; label=${label#NVIDIA }; label=${label%% *}          # "NVIDIA H200, ..." -> "H200"
else
    label="$(uname -m) CPU"
fi
if [[ $SMOKE == 1 ]]; then
    sfx=smoke
else
    sfx=$(printf '%s' "$label" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9' '_')   # file stems: throughput_h200, ...
fi
{ echo "label: $label"; echo "nvidia-smi: ${gpu:-none}"; echo "host: $(uname -a)"; echo "cpus: $(nproc)"
  echo "python: $($PY --version 2>&1)"; } > "$RAW/device.txt"

# ---- slots, in priority order (seconds; they and 10 x G add up to <= BUDGET) -------------------------
ORDER=(0 a1 a2 a3 b1 b2 c1 c2 d1 d2)
declare -A SLOT=([0]=125 [a1]=40 [a2]=40 [a3]=40 [b1]=50 [b2]=50 [c1]=30 [c2]=55 [d1]=40 [d2]=25)
declare -A MD                              # job -> the markdown table it writes (for summary.md)

selected() { [[ " $JOBS " == *" ${1:0:1} "* ]]; }
reserved_after() {                          # worst-case seconds of the selected jobs after $1
    local id=$1 seen=0 sum=0 j
    for j in "${ORDER[@]}"; do
        if (( seen )) && selected "$j"; then
            if [[ $SMOKE == 1 ]]; then sum=$((sum + 600 + G)); else sum=$((sum + SLOT[$j] + G)); fi
        fi
        [[ $j == "$id" ]] && seen=1
    done
    echo "$sum"
}

T0=0                                        # $SECONDS counts from the script's start
DEADLINE=$BUDGET
JOBS_MD=$OUT/jobs.md
{
    echo "# GPU reproductions: $label"
    echo
    echo "- started $(date -u +%FT%TZ); budget ${BUDGET} s; smoke: $SMOKE; jobs: $JOBS"
    echo "- device: ${gpu:-no nvidia-smi}; raw outputs: \`$RAW\` (bundled in results.tar.gz)"
    echo
    echo "| job | what | start (UTC) | end (UTC) | wall s | limit s | exit | status |"
    echo "|---|---|---|---|---|---|---|---|"
} > "$JOBS_MD"

bundle() {                                  # refresh summary.md and results.tar.gz in $OUT
    local j
    {
        echo "# GPU reproductions: $label — every table written so far"
        echo
        echo "Job status: \`jobs.md\`. Plots, JSON and logs: \`results.tar.gz\` (paths below are inside it)."
        for j in "${ORDER[@]}"; do
            if [[ -n ${MD[$j]:-} && -f ${MD[$j]} ]]; then
                echo; echo "---"; echo; echo "<!-- job $j: ${MD[$j]#"$RAW"/} -->"; echo
                cat "${MD[$j]}"
            elif [[ -f $RAW/logs/job_$j.log ]]; then   # cut off or failed: what it printed
                echo; echo "---"; echo; echo "## job $j wrote no table; the end of logs/job_$j.log:"; echo
                echo '```'; grep -v -i -e warning -e '^\s' -e '^$' -e '^Traceback' "$RAW/logs/job_$j.log" \
                    | tail -n 25 | cut -c1-300; echo '```'
            fi
        done
    } > "$OUT/summary.md.part" && mv -f "$OUT/summary.md.part" "$OUT/summary.md"
    tar -czf "$RAW.tar.gz" -C "$RAW" . 2>/dev/null \
        && cp -f "$RAW.tar.gz" "$OUT/results.tar.gz.part" && mv -f "$OUT/results.tar.gz.part" "$OUT/results.tar.gz"
}

# run_job ID "what" [--md PATH] -- command ...
run_job() {
    local id=$1 what=$2; shift 2
    local md=""
    if [[ $1 == --md ]]; then md=$2; shift 2; fi
    [[ $1 == -- ]] && shift
    selected "$id" || return 0
    [[ -n $md ]] && MD[$id]=$md
    local log="$RAW/logs/job_${id}.log" rest limit start end wall rc status t_start
    rest=$(reserved_after "$id")
    limit=$((DEADLINE - SECONDS - rest - G))
    start=$(date -u +%T)
    if (( limit < 10 )); then
        echo "| $id | $what | $start | – | 0 | $limit | – | skipped: no time left |" >> "$JOBS_MD"
        echo "== [$id] $what: SKIPPED (no time left)"
        return 0
    fi
    echo "== [$id] $what (limit ${limit} s, $((SECONDS - T0)) s elapsed)"
    if [[ ${DRY_RUN:-0} == 1 ]]; then
        printf '   '; printf '%q ' "$@"; echo
        echo "| $id | $what | $start | – | 0 | $limit | – | dry run |" >> "$JOBS_MD"
        return 0
    fi
    printf '%q ' "$@" > "$log"; printf '\n\n' >> "$log"
    t_start=$SECONDS
    timeout --signal=INT --kill-after=$G "$limit" "$@" >> "$log" 2>&1
    rc=$?
    wall=$((SECONDS - t_start)); end=$(date -u +%T)
    case $rc in
        0) status=ok ;;
        124|137) status="TIMEOUT (cut at ${limit} s)" ;;
        *) status="FAILED" ;;
    esac
    echo "| $id | $what | $start | $end | $wall | $limit | $rc | $status |" >> "$JOBS_MD"
    grep -v -i -e warning -e '^\s*$' "$log" | tail -n 4 | cut -c1-220
    echo "   -> $status, ${wall} s (log: logs/job_${id}.log)"
    bundle
}

# ---- 0. throughput (~115 s expected on an H100, slot 125 s) --------------------------------------------
# throughput.py writes its table only at the end, so it is sized to finish inside its slot: one
# warm-up + one timed 500-step epoch per (peer, K) and one round (the H100 table used 3 epochs x 2
# rounds: 214 s), replicas R = 1 and 10 (the GPU target: R = 10 in < 2x the time of R = 1; R = 100
# is in results/throughput_h100.md).  Peers: every one throughput.py has whose package imports here;
# torch_1t is left out (its one-thread setting matters only for torch on a CPU).  A
# torch.compile(mode="reduce-overhead") peer is not built yet (throughput.py has none).
peers=()
has() { $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" >/dev/null 2>&1; }
if has torch; then peers+=(torch); else echo "note: torch is not installed: no torch peer"; fi
if has numpyro; then peers+=(numpyro numpyro_epoch); else echo "note: numpyro is not installed: no numpyro peers"; fi
peers+=(fused sajax)
if [[ $SMOKE == 1 ]]; then
    tp=(--steps-per-epoch 5 --epochs 1 --rounds 1 --ks 1 3 --replicas 1 2 --eval-n 100); tp_what="K=1, 3; R=1, 2"
else
    tp=(--epochs 1 --rounds 1 --ks 1 50 --replicas 1 10); tp_what="K=1, 50; R=1, 10"
fi
run_job 0 "throughput: peers ${peers[*]}; $tp_what" --md "$RAW/throughput/throughput_$sfx.md" -- \
    $PY benchmarks/throughput.py "${tp[@]}" --peers "${peers[@]}" --device-label "$label" \
    --name "throughput_$sfx" --out "$RAW/throughput"

# ---- a. VIMCO, RWS, scheduled JSA on the 200-200-200 SBN at K = 10 (3 x 40 s) ------------------------
# The protocol of results/vimco_table_h100.md (batch 100, Adam 1e-3, K = 10 draws per example per step,
# test NLL with K = 1000 on all 10,000 test images), 50 epochs instead of 30 (the paper: 3000).  One
# process per method, so that a cut-off loses one row (discrete_mnist.py writes its table at the end):
# per method ~8 s start + ~8 s compile + 50 x 0.14 s + 6 curve points + 2 s test NLL ~ 30 s.  The
# epochs are fixed, not fitted to the time left, so that the three methods get the same budget.
if [[ $SMOKE == 1 ]]; then
    sbn=(--epochs 2 --n-train 1000 --eval-k 10 --eval-n 100 --curve-k 5 --curve-n 100 --curve-every 1)
else
    sbn=(--epochs 50 --eval-k 1000 --eval-n 10000 --curve-k 50 --curve-n 500 --curve-every 10)
fi
i=1
for m in vimco rws jsa-sched; do
    name="vimco_table_k10_${sfx}_${m}"
    run_job "a$i" "SBN 200-200-200, K=10: $m" --md "$RAW/sbn_k10/$name.md" -- \
        $PY benchmarks/discrete_mnist.py --archs linear-3 --k 10 --lr 1e-3 --methods "$m" "${sbn[@]}" \
        --device-label "$label" --name "$name" --out "$RAW/sbn_k10"
    i=$((i + 1))
done

# ---- b. PacGAN Table 1: GAN, PacGAN2, PacGAN4 on grid25 and ring8 (2 x 50 s) -----------------------------
# PacGAN's networks and optimizer, 10 seeds trained in one program, 3,000 steps (the paper: 400,000).
# mode_collapse.py writes its table at the end (and prints one row per method): one process per
# dataset, sized at ~8 s start + 3 x (compile + 3,000 steps at an estimated 1-1.5 ms + scoring) ~ 45 s.
if [[ $SMOKE == 1 ]]; then
    gan=(--steps 20 --chunk 10 --seeds 2 --num-train 1000)
else
    gan=(--steps 3000 --chunk 500 --seeds 10)
fi
i=1
for ds in grid25 ring8; do
    run_job "b$i" "PacGAN Table 1, $ds: gan pacgan2 pacgan4" --md "$RAW/pacgan/pacgan_table1_${sfx}_$ds.md" -- \
        $PY benchmarks/mode_collapse.py --datasets "$ds" --methods gan pacgan2 pacgan4 "${gan[@]}" \
        --name "pacgan_table1_${sfx}_$ds" --out "$RAW/pacgan"
    i=$((i + 1))
done

# ---- c. IWAE Table 1, K = 1 and K = 50 (30 s + 55 s) -------------------------------------------------
# The paper's schedule shortened to its first 3 stages (1 + 3 + 9 = 13 passes, as results/iwae_table1_cpu.md;
# the paper: 3,280), batch 20; test NLL with K = 1000 (the paper: 5000) on all 10,000 test images.
# K = 1 trains once (VAE = IWAE); K = 50 trains VAE and IWAE.  iwae_table1.py writes its table at the
# end; --log writes each run's curve after every chunk (partial results survive a cut-off).
# Estimates: K = 1 ~8 s start + 6 s compile + 13 x 0.3 s + evaluation ~ 25 s; K = 50 ~ 8 + 2 x 17 s.
if [[ $SMOKE == 1 ]]; then
    iw=(--stages 1 --epoch-scale 0.01 --chunk-steps 25 --eval-k 10 --eval-n 100 --curve-k 5 --curve-n 100 --curve-every 1)
else
    iw=(--stages 3 --epoch-scale 1 --eval-k 1000 --eval-n 10000 --curve-k 100 --curve-n 1000 --curve-every 3)
fi
i=1
for k in 1 50; do
    run_job "c$i" "IWAE Table 1, K=$k: vae iwae" --md "$RAW/iwae/iwae_table1_${sfx}_k$k.md" -- \
        $PY benchmarks/iwae_table1.py --methods vae iwae --ks "$k" "${iw[@]}" --log \
        --device-label "$label" --name "iwae_table1_${sfx}_k$k" --out "$RAW/iwae"
    i=$((i + 1))
done

# ---- d. NADE and MADE (40 s + 25 s) ----------------------------------------------------------------
# autoregressive_mnist.py writes its table at the end: one process per model.  NADE (500 hidden):
# 10 epochs (its [batch, 784, 500] cumulative sum is the costly part; ~1 s an epoch estimated);
# MADE (500 hidden, 32 masks): 20 epochs (~0.1 s an epoch).  Exact test NLL on all 10,000 test images.
if [[ $SMOKE == 1 ]]; then
    ar_nade=(--epochs 1 --max-train 200 --max-test 100 --batch-size 50 --curve-n 100)
    ar_made=(--epochs 1 --max-train 200 --max-test 100 --batch-size 50 --curve-n 100 --made-masks 4)
else
    ar_nade=(--epochs 10)
    ar_made=(--epochs 20)
fi
run_job d1 "NADE, ${ar_nade[1]} epochs" --md "$RAW/autoregressive/nade_mnist_$sfx.md" -- \
    $PY benchmarks/autoregressive_mnist.py --models nade "${ar_nade[@]}" --device-label "$label" \
    --name "nade_mnist_$sfx" --out "$RAW/autoregressive"
run_job d2 "MADE, ${ar_made[1]} epochs" --md "$RAW/autoregressive/made_mnist_$sfx.md" -- \
    $PY benchmarks/autoregressive_mnist.py --models made "${ar_made[@]}" --device-label "$label" \
    --name "made_mnist_$sfx" --out "$RAW/autoregressive"

if [[ ${DRY_RUN:-0} == 1 ]]; then
    [[ -z ${RAW_DIR:-} ]] && rm -rf "$RAW"
    cat "$JOBS_MD"; exit 0
fi
echo >> "$JOBS_MD"
echo "Total: $((SECONDS - T0)) s (budget $BUDGET s), ended $(date -u +%FT%TZ)." >> "$JOBS_MD"
bundle
echo
cat "$JOBS_MD"
echo
echo "outputs: $OUT/jobs.md, $OUT/summary.md, $OUT/results.tar.gz (raw: $RAW)"
