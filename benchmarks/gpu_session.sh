#!/usr/bin/env bash
# The device checks of issues 10 and 11, as one script for the lent GPU (about 7 minutes on an H100).
# Run on the GPU machine from the project root:  source .whl/env.sh && bash benchmarks/gpu_session.sh "$OUT"
# Each benchmark has its own time limit, so one that runs long still leaves the others' tables.
set -u
out=${1:?usage: gpu_session.sh OUT_DIR}
label=${DEVICE_LABEL:-H100}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
# 1. JSA vs RWS iteration cost at K = 10 (issue 10 target: JSA <= 1.1x RWS)
timeout 80 python3 benchmarks/jsa_speed.py --arch linear-3 --k 10 --epochs 3 --rounds 1 --chunk-steps 100 \
    --device-label "$label" --name jsa_speed_h100 --out "$out" 2>&1 | grep -v Warning | tail -12
# 2. Mnih & Rezende's SBN 200-200-200 at K = 10 with every estimator, one protocol, shortened schedule
timeout 250 python3 benchmarks/discrete_mnist.py --archs linear-3 --k 10 --epochs 30 --lr 1e-3 \
    --methods vimco rws jsa jsa-sched nvil rloo disarm gumbel-st --eval-k 1000 --eval-n 10000 \
    --curve-k 50 --curve-n 500 --curve-every 5 --chunk-steps 100 \
    --device-label "$label" --name vimco_table_h100 --out "$out" 2>&1 | grep -v Warning | tail -22
# 3. NADE and MADE (issue 11), shortened
timeout 90 python3 benchmarks/autoregressive_mnist.py --models nade made --epochs 10 \
    --device-label "$label" --name autoregressive_h100 --out "$out" 2>&1 | grep -v Warning | tail -12
