#!/usr/bin/env bash
# Rebuild every stored benchmark's tables, report and plots from the committed results tables
# (benchmarks/*/results.parquet), computing nothing: the figures in README.md and
# benchmarks/README.md come from these commands. Needs ../shared/datasets beside the clone.
# Usage: scripts/rebuild_benchmark_reports.sh [path/to/metalearn]   (default .venv/bin/metalearn)
set -euo pipefail
cd "$(dirname "$0")/.."
METALEARN="${1:-.venv/bin/metalearn}"
# scikit-posthocs draws the critical-difference crossbars in set order: a fixed hash seed makes
# that PNG the same from one rebuild to the next (the figures and tables never depend on it).
export PYTHONHASHSEED=0
DATA="folder:../shared/datasets:validation"
CLASSIC="random,least_confidence,margin,entropy,density_weighted,kcenter_greedy,qbc,albl"
COLD_B10=(--models logreg,rf --regimes cold --batch-sizes 10 --budget 100 --seeds 10)

# The full protocol, classic strategies (benchmarks/validation-classic/report.md).
"$METALEARN" benchmark --quiet --stored-only --datasets "$DATA" --seeds 10 --jobs 2 \
    --out benchmarks/validation-classic
# The previous released default (PPO, now released as ppo-synthetic) against every classic
# strategy, from the same runs.
METALEARN_POLICY_DIR=benchmarks/validation-trainers/policies "$METALEARN" benchmark --quiet --stored-only \
    --strategies "$CLASSIC,policy:ppo-synthetic,policy:lal-synthetic-20min" --datasets "$DATA" --seeds 10 --jobs 2 \
    --out benchmarks/validation-classic --report-dir benchmarks/validation-default
# Candidate policies against random and margin, cold start, batch 10.
METALEARN_POLICY_DIR=benchmarks/validation-trainers/policies "$METALEARN" benchmark --quiet --stored-only \
    --strategies random,margin,policy:imitation-synthetic-20min,policy:lal-synthetic-20min,policy:ppo-synthetic-20min \
    --datasets "$DATA" "${COLD_B10[@]}" --jobs 2 --out benchmarks/validation-trainers
METALEARN_POLICY_DIR=benchmarks/validation-proba/policies "$METALEARN" benchmark --quiet --stored-only \
    --strategies random,margin,policy:lal-proba-residual-5min \
    --datasets "$DATA" "${COLD_B10[@]}" --jobs 2 --out benchmarks/validation-proba
METALEARN_POLICY_DIR=benchmarks/validation-issue6/policies "$METALEARN" benchmark --quiet --stored-only \
    --strategies random,margin,policy:ppo-synthetic-20min,policy:ppo-residual-st-45min \
    --datasets "$DATA" "${COLD_B10[@]}" --jobs 2 --out benchmarks/validation-issue6
# Issue 12 on the 10 held-in train-split datasets: batch 10, then logistic regression at batch 1.
HELDIN="folder:../shared/datasets:analcatdata_dmft,folder:../shared/datasets:ann_thyroid,folder:../shared/datasets:breast_cancer_ljubljana,folder:../shared/datasets:haberman,folder:../shared/datasets:heart_statlog,folder:../shared/datasets:hill_valley_with_noise,folder:../shared/datasets:kr_vs_kp,folder:../shared/datasets:mfeat_zernike,folder:../shared/datasets:mushroom,folder:../shared/datasets:wine_quality_red"
ES="policy:benchmarks/es-training/seed0/policy.safetensors"
"$METALEARN" benchmark --quiet --stored-only \
    --strategies "random,margin,typiclust,probcover,typiclust_margin,policy:ppo-synthetic,$ES,policy:benchmarks/es-training/seed0/last.safetensors" \
    --datasets "$HELDIN" --models logreg,rf --regimes cold,warm --batch-sizes 10 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin
"$METALEARN" benchmark --quiet --stored-only --strategies "margin,typiclust_margin,policy:ppo-synthetic,$ES" \
    --datasets "$HELDIN" --models logreg --regimes cold,warm --batch-sizes 1 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin --report-dir benchmarks/heldin/logreg-batch1
# Issue 12's final comparison on the validation split: the released ES default (frozen copy),
# the TypiClust-then-margin switch and the previous default (stored as policy:ppo-synthetic).
FROZEN="policy:benchmarks/es-training/frozen/es_seed1_gen4.safetensors"
"$METALEARN" benchmark --quiet --stored-only --strategies "random,margin,typiclust_margin,policy:ppo-synthetic,$FROZEN" \
    --datasets "$DATA" --seeds 10 --jobs 2 --out benchmarks/validation-classic --report-dir benchmarks/validation-es
# Issue 20's frozen pool@3 candidate (ES generation 9) on the validation split, beside the
# tuned rule and the released default.
POOL3="policy:benchmarks/es-training/frozen/pool3_seed0_gen9.safetensors"
"$METALEARN" benchmark --quiet --stored-only --strategies "random,margin,typiclust_margin,$FROZEN,$POOL3" \
    --datasets "$DATA" --seeds 10 --jobs 2 --out benchmarks/validation-classic --report-dir benchmarks/validation-pool3
# Issue 12's candidates on the held-in datasets: the three ES runs' kept policies and the
# pool@2 imitation, LAL and PPO policies, batch 10, then logistic regression at batch 1.
CANDIDATES="margin,typiclust_margin,policy:ppo-synthetic,$ES,policy:benchmarks/es-training/seed1-p64/policy.safetensors,policy:benchmarks/es-training/seed1-p64-no-history/policy.safetensors,policy:benchmarks/pool2-trainers/imitation/policy.safetensors,policy:benchmarks/pool2-trainers/lal/policy.safetensors,policy:benchmarks/pool2-trainers/ppo/policy.safetensors"
"$METALEARN" benchmark --quiet --stored-only --strategies "$CANDIDATES" \
    --datasets "$HELDIN" --models logreg,rf --regimes cold,warm --batch-sizes 10 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin --report-dir benchmarks/heldin/candidates
"$METALEARN" benchmark --quiet --stored-only --strategies "$CANDIDATES" \
    --datasets "$HELDIN" --models logreg --regimes cold,warm --batch-sizes 1 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin --report-dir benchmarks/heldin/candidates-logreg-batch1
# Issue 21's compute measures: margin and random at fixed batch sizes, the AULC-vs-fits front.
"$METALEARN" benchmark --quiet --stored-only --strategies random,margin --datasets sklearn:wine,sklearn:breast_cancer \
    --models logreg --regimes cold --batch-sizes 1,2,5,10,20,50 --budget 60 --seeds 3 --jobs 2 \
    --out benchmarks/compute-front-smoke
# Issue 20's fair baseline: the fixed switches TypiClust-then-margin and ProbCover-then-margin at
# switch points 5, 10, 20 and 40 labels on the held-in datasets (logistic regression at batch 1
# and 10, then both models at batch 10); the tuned rule is chosen from these tables.
RULES="margin,typiclust_margin,typiclust_margin:5,typiclust_margin:20,typiclust_margin:40,probcover_margin:5,probcover_margin:10,probcover_margin:20,probcover_margin:40"
"$METALEARN" benchmark --quiet --stored-only --strategies "$RULES" \
    --datasets "$HELDIN" --models logreg --regimes cold,warm --batch-sizes 1 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin --report-dir benchmarks/heldin/switch-rules-logreg-batch1
"$METALEARN" benchmark --quiet --stored-only --strategies "$RULES" \
    --datasets "$HELDIN" --models logreg --regimes cold,warm --batch-sizes 10 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin --report-dir benchmarks/heldin/switch-rules-logreg-batch10
"$METALEARN" benchmark --quiet --stored-only --strategies "$RULES" \
    --datasets "$HELDIN" --models logreg,rf --regimes cold,warm --batch-sizes 10 --budget 100 --seeds 5 --jobs 2 \
    --out benchmarks/heldin --report-dir benchmarks/heldin/switch-rules
