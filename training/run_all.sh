#!/usr/bin/env bash
# Retrain every bundled reference model, then check the manifests offline.
# Usage: training/run_all.sh [DATASETS_DIR]   (default: ../shared/datasets beside the repository)
# Each script is seeded and deterministic on the CPU; see training/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/datasets}"
PY="${PYTHON:-/usr/bin/python3}"

# --- finance ---
"$PY" training/finance/credit_default.py "$DATA/credit-default/UCI_Credit_Card.csv"
"$PY" training/finance/card_fraud.py "$DATA/card-fraud/creditcard_sample.csv"

# --- manufacturing ---
"$PY" training/manufacturing/machine_failure.py "$DATA/ai4i2020/ai4i2020.csv"
"$PY" training/manufacturing/turbofan_rul.py "$DATA/cmapss-fd001/train_FD001.txt"

# --- medical (maintained by the medical model's author: add its command on the line below) ---
"$PY" training/medical/train_breast_us_lesion.py "$DATA/busi"   # ~50 min on one shared CPU core

# --- offline manifest / hash / graph-name check (npm run models:verify is the authoritative one) ---
npm run models:verify
