#!/usr/bin/python3
"""Train manufacturing/machine-failure v1: probability of machine failure and of each failure mode
(TWF, HDF, PWF, OSF, RNF) from one AI4I 2020 reading.

Usage: python3 training/manufacturing/machine_failure.py [CSV] [--out DIR] [--seed 42]

Inputs: product quality type (L/M/H, one-hot), air and process temperature (K), rotational speed
(rpm), torque (Nm), tool wear (min). UDI and Product ID are not used. Inside the graph the model
also derives three physical quantities from the un-standardised inputs (temperature difference,
mechanical power, tool-wear x torque strain), so callers still send only the standardised inputs.
Metrics are recomputed from the ONNX outputs (onnxruntime-node) on a fixed, seeded, stratified
80/20 split.
"""
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (start_run, DATASETS_DIR, REPO_ROOT, best_f1_threshold, binary_summary, export_onnx,  # noqa: E402
                    feature_entry, last_max_abs_diff, md_table, ort_parity, rounded, standardize, threshold_stats, write_manifest, write_model_card)
from common.tabular import fit_members, MLP, predict  # noqa: E402

LABELS = ['machine_failure', 'TWF', 'HDF', 'PWF', 'OSF', 'RNF']
LABEL_COLUMNS = ['Machine failure', 'TWF', 'HDF', 'PWF', 'OSF', 'RNF']
LABEL_MEANING = {
    'machine_failure': 'the machine failed (any mode)',
    'TWF': 'tool wear failure', 'HDF': 'heat dissipation failure', 'PWF': 'power failure',
    'OSF': 'overstrain failure', 'RNF': 'random failure (not predictable from the inputs by design)',
}
ENSEMBLE = 5
HPARAMS = {'hidden': [64, 64], 'dropout': 0.1, 'epochs': 200, 'lr': 2e-3, 'weightDecay': 1e-3, 'batchSize': 128,
           'ensembleMembers': ENSEMBLE, 'derivedFeatures': ['process-air temperature difference (K)',
                                                             'power torque*rpm*2*pi/60 (W)',
                                                             'strain tool wear*torque (min*Nm)']}
SPECS = [
    ('type_l', 'Type', 'one_hot:L', 'indicator', 'Product quality variant L (low, 50 % of products)'),
    ('type_m', 'Type', 'one_hot:M', 'indicator', 'Product quality variant M (medium, 30 %)'),
    ('type_h', 'Type', 'one_hot:H', 'indicator', 'Product quality variant H (high, 20 %)'),
    ('air_temperature', 'Air temperature [K]', 'none', 'K', 'Air temperature'),
    ('process_temperature', 'Process temperature [K]', 'none', 'K', 'Process temperature'),
    ('rotational_speed', 'Rotational speed [rpm]', 'none', 'rpm', 'Rotational speed of the tool spindle'),
    ('torque', 'Torque [Nm]', 'none', 'Nm', 'Torque'),
    ('tool_wear', 'Tool wear [min]', 'none', 'min', 'Tool wear: minutes of use of the current tool'),
]
I_AIR, I_PROC, I_RPM, I_TORQUE, I_WEAR = 3, 4, 5, 6, 7


def derived_raw(raw: np.ndarray) -> np.ndarray:
    """[N, 3] physical features from raw (un-standardised) numeric columns (numpy, float64)."""
    dt = raw[:, I_PROC] - raw[:, I_AIR]
    power = raw[:, I_TORQUE] * raw[:, I_RPM] * 2 * math.pi / 60
    strain = raw[:, I_WEAR] * raw[:, I_TORQUE]
    return np.stack([dt, power, strain], 1)


class FailureNet(nn.Module):
    """standardised features -> (features + standardised derived physics) -> MLP -> 6 logits."""

    def __init__(self, mean, scale, d_mean, d_scale, n_out=6):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32))
        self.register_buffer('scale', torch.tensor(scale, dtype=torch.float32))
        self.register_buffer('d_mean', torch.tensor(d_mean, dtype=torch.float32))
        self.register_buffer('d_scale', torch.tensor(d_scale, dtype=torch.float32))
        self.mlp = MLP(len(mean) + 3, HPARAMS['hidden'], n_out, HPARAMS['dropout'])

    def forward(self, x):
        raw = x * self.scale + self.mean
        dt = raw[:, I_PROC] - raw[:, I_AIR]
        power = raw[:, I_TORQUE] * raw[:, I_RPM] * (2 * math.pi / 60)
        strain = raw[:, I_WEAR] * raw[:, I_TORQUE]
        d = (torch.stack([dt, power, strain], 1) - self.d_mean) / self.d_scale
        return self.mlp(torch.cat([x, d], 1))


class Ensemble(nn.Module):
    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([torch.sigmoid(m(x)) for m in self.members], 0).mean(0)


def main():
    args, out, t0 = start_run(__doc__, DATASETS_DIR / 'ai4i2020' / 'ai4i2020.csv', REPO_ROOT / 'models' / 'manufacturing' / 'machine-failure' / '1')

    df = pd.read_csv(args.data)
    y = df[LABEL_COLUMNS].to_numpy().astype(int)
    tr, va = train_test_split(np.arange(len(df)), test_size=0.2, stratify=y[:, 0], random_state=args.seed)

    feats, cols, raws = [], [], []
    for name, source, transform, unit, desc in SPECS:
        if transform.startswith('one_hot:'):
            raw = (df[source] == transform.split(':', 1)[1]).to_numpy(dtype=np.float64)
            t = raw
            entry = feature_entry(name, source, transform, raw[tr], t[tr], unit, desc)
            entry['min'], entry['max'], entry['baseline'] = 0.0, 1.0, float(np.median(raw[tr]))
            entry['categories'] = ['L', 'M', 'H']
        else:
            raw = df[source].to_numpy(dtype=np.float64)
            t = raw
            entry = feature_entry(name, source, transform, raw[tr], t[tr], unit, desc)
        feats.append(entry)
        cols.append(t)
        raws.append(raw)
    raw_all = np.stack(raws, 1)
    x = standardize(np.stack(cols, 1), feats)
    d = derived_raw(raw_all[tr])
    d_mean, d_scale = d.mean(0), d.std(0)
    mean = np.array([f['mean'] for f in feats])
    scale = np.array([f['scale'] for f in feats])

    members = fit_members(lambda: FailureNet(mean, scale, d_mean, d_scale), x[tr], y[tr], HPARAMS, ENSEMBLE,
                          args.seed)
    model = Ensemble(members).eval()
    train_seconds = time.time() - t0

    onnx_path = export_onnx(model, {'features': x[va[:8]]}, out / 'model.onnx', ['probabilities'])
    ort = ort_parity(onnx_path, {'features': x[va]}, {'probabilities': predict(model, x[va])})
    parity = dict(last_max_abs_diff)
    p = ort['probabilities'].astype(np.float64)
    yv = y[va]
    p_train = predict(model, x[tr])

    per_label = {}
    for j, lab in enumerate(LABELS):
        s = binary_summary(yv[:, j], p[:, j])
        s['positives'] = int(yv[:, j].sum())
        s['trainAveragePrecision'] = binary_summary(y[tr, j], p_train[:, j])['averagePrecision']
        t = best_f1_threshold(yv[:, j], p[:, j]) if yv[:, j].sum() else 0.5
        s['bestF1Threshold'] = t
        s['atBestF1'] = {k: v for k, v in threshold_stats(yv[:, j], p[:, j], t).items()
                         if k in ('precision', 'recall', 'f1')}
        st = threshold_stats(yv[:, j], p[:, j], 0.5)
        s['at0.5'] = {k: st[k] for k in ('precision', 'recall', 'f1')}
        per_label[lab] = s

    raise_t = per_label['machine_failure']['bestF1Threshold']
    clear_t = round(max(0.05, raise_t * 0.6), 2)
    thresholds = {
        'failure': {'raise': raise_t, 'clear': clear_t,
                    'atRaise': rounded(threshold_stats(yv[:, 0], p[:, 0], raise_t)),
                    'atClear': rounded(threshold_stats(yv[:, 0], p[:, 0], clear_t)),
                    'rule': 'raise an alarm when probabilities[0] (machine_failure) >= raise; clear it only when it '
                            'falls below clear (hysteresis). raise = maximum F1 on validation, clear = 0.6 * raise.'},
        'modes': {lab: {'raise': per_label[lab]['bestF1Threshold']} for lab in LABELS[1:]},
    }
    metrics = rounded({
        'split': 'validation (stratified on Machine failure, 80/20, seed %d)' % args.seed,
        'validation': per_label,
        'macroAveragePrecisionModes': float(np.mean([per_label[lab]['averagePrecision'] for lab in LABELS[1:]
                                                     if per_label[lab]['averagePrecision'] is not None])),
        'parityMaxAbsDiff': parity['probabilities'],
        'trainingSeconds': train_seconds,
        'computedFrom': 'onnxruntime-node outputs of model.onnx',
    })
    provenance = {
        'dataset': 'ai4i2020/ai4i2020.csv',
        'source': 'AI4I 2020 Predictive Maintenance Dataset (S. Matzka, 2020), UCI Machine Learning Repository, '
                  'https://archive.ics.uci.edu/dataset/601 (synthetic data modelled on a real milling process)',
        'license': 'CC BY 4.0',
        'trainingScript': 'training/manufacturing/machine_failure.py',
        'split': 'stratified on Machine failure, 80%% train / 20%% validation, sklearn train_test_split('
                 'random_state=%d); %d train rows, %d validation rows' % (args.seed, len(tr), len(va)),
        'seed': args.seed,
        'rows': int(len(df)),
        'hyperparameters': HPARAMS,
        'framework': 'torch %s, exported with opset 17' % torch.__version__,
    }
    manifest = {
        'name': 'machine-failure', 'version': '1', 'domain': 'manufacturing', 'task': 'multi-label-classification',
        'default': True,
        'description': 'Probability of machine failure and of each failure mode (tool wear, heat dissipation, power, '
                       'overstrain, random) from one reading of a milling machine.',
        'inputs': [{'name': 'features', 'dtype': 'float32', 'shape': [-1, len(feats)],
                    'description': 'standardised features in preprocessing.features order: (transform(raw) - mean) / scale'}],
        'outputs': [{'name': 'probabilities', 'dtype': 'float32', 'shape': [-1, len(LABELS)],
                     'description': 'independent sigmoid probabilities in labels order'}],
        'preprocessing': {'type': 'standardize', 'features': feats,
                          'excludedColumns': ['UDI', 'Product ID'] + LABEL_COLUMNS,
                          'notes': 'one_hot:<v> is 1.0 when Type equals v else 0.0 (exactly one of L/M/H is 1). '
                                   'The graph derives process-air temperature difference, power and tool-wear x '
                                   'torque internally from the un-standardised inputs.'},
        'postprocessing': {'type': 'multi-label-sigmoid', 'labels': LABELS, 'meaning': LABEL_MEANING},
        'labels': LABELS,
        'thresholds': thresholds,
        'provenance': provenance,
        'metrics': metrics,
        'batching': {'maxBatchSize': 256, 'maxQueueDelayMs': 1},
    }
    write_manifest(out, manifest)
    write_card(out, feats, metrics, thresholds, provenance, len(tr), len(va))
    pf = per_label['machine_failure']
    print(f'machine-failure: failure AP {pf["averagePrecision"]:.4f} AUC {pf["auc"]:.4f} F1 {pf["atBestF1"]["f1"]:.3f}; '
          + ', '.join(f'{lab} AP {per_label[lab]["averagePrecision"]:.3f}' for lab in LABELS[1:])
          + f'; parity {parity["probabilities"]:.2e}; raise {raise_t} clear {clear_t}; {time.time() - t0:.0f}s')


def write_card(out, feats, m, th, prov, n_tr, n_va):
    feat_rows = [(f['name'], f['source'], f['transform'], f['unit'], f['description'],
                  f'{f["min"]:g}-{f["max"]:g}') for f in feats]
    rows = []
    for lab, s in m['validation'].items():
        rows.append((lab, LABEL_MEANING[lab], s['positives'], s['averagePrecision'], s['auc'], s['bestF1Threshold'],
                     s['atBestF1']['precision'], s['atBestF1']['recall'], s['atBestF1']['f1'],
                     s['trainAveragePrecision']))
    f = th['failure']
    sections = [
        ('Data source and licence', f"""
*AI4I 2020 Predictive Maintenance Dataset* (S. Matzka, 2020), UCI Machine Learning Repository,
licence CC BY 4.0. Synthetic data that reflects a real milling process: each row is one reading with
product quality type, temperatures, speed, torque and tool wear, and whether the machine failed and
by which mode(s). The copy used (`../shared/datasets/ai4i2020/ai4i2020.csv`, {n_tr + n_va} rows) is
the training part of a fixed split; the rest is held back for independent evaluation. Not in this
repository.
"""),
        ('Intended use', """
Reference model for the gateway: flag readings with a high failure risk and suggest the likely
mode, to schedule an inspection or tool change, with an operator deciding.

Out of scope: safety-critical interlocks or automatic shutdown; other machines, processes or sensor
set-ups than the simulated milling process; predicting *when* a failure happens (see
turbofan-rul for remaining life); random failures (RNF), which are unpredictable by construction.
"""),
        ('Features', 'Input `features` float32 [-1, %d], in this order, each standardised as '
                     '`(transform(raw) - mean) / scale` (values in `model.json`); the last column gives the '
                     'valid raw range seen in training. UDI and Product ID are not used.\n\n' % len(feats)
         + md_table(['name', 'column', 'transform', 'unit', 'meaning', 'range'], feat_rows)
         + '\n\nInside the graph the model un-standardises the inputs and adds three derived quantities: '
           'process minus air temperature (K), power = torque x rpm x 2*pi/60 (W) and tool wear x torque '
           '(min*Nm), which drive the heat dissipation, power and overstrain failure rules of the data set.'),
        ('Validation metrics', f"""
Split: stratified on `Machine failure`, 80 % train ({n_tr} rows) / 20 % validation ({n_va} rows),
`train_test_split(random_state={prov['seed']})`, fixed. Numbers computed from the ONNX model's
outputs in onnxruntime-node (max abs difference to PyTorch {m['parityMaxAbsDiff']:.2g}). Precision,
recall and F1 are at each label's best-F1 threshold on validation (an optimistic choice; for the
modes with very few positives these numbers are very noisy).

""" + md_table(['output', 'meaning', 'positives', 'AP', 'AUC', 'threshold', 'precision', 'recall', 'F1',
                'train AP'], rows) + f"""

Published reference (other splits): machine-failure F1 about 0.8-0.9 for tree ensembles and MLPs.

Alarm thresholds (on `probabilities[0]`, machine failure, with hysteresis): raise at
{f['raise']} (precision {f['atRaise']['precision']:.3f}, recall {f['atRaise']['recall']:.3f} on
validation), clear when it falls below {f['clear']} (at that level precision
{f['atClear']['precision']:.3f}, recall {f['atClear']['recall']:.3f}). Raise = maximum F1 on validation,
clear = 0.6 x raise so that an alarm does not flap on noisy readings. Per-mode best-F1 thresholds
are in `thresholds.modes`."""),
        ('Limitations', """
- Synthetic data: the failure modes follow simple rules (e.g. heat dissipation failure when the
  temperature difference is below 8.6 K and speed below 1380 rpm); real machines are noisier.
- About 3.4 % of readings are failures; RNF (random failures, about 0.1 %) cannot be predicted and
  its output stays near its base rate. A few failures have no mode flagged in the data.
- One reading at a time: no history, no trend. Inputs outside the training range are extrapolation.
- Mode probabilities are independent sigmoids; they need not sum to the failure probability.
"""),
        ('Fairness', """
No people are described by this data (machine readings only), so there are no demographic groups
to assess. The relevant "fairness" is across product types L/M/H: L has a lower overstrain limit
and is over-represented, so per-type error rates should be monitored; wrong alarms cost operator
time and missed alarms cost downtime.
"""),
        ('Training', f"""
`python3 training/manufacturing/machine_failure.py` (seed {prov['seed']}, CPU, one thread, about
{m['trainingSeconds']:.0f} s). Mean of {HPARAMS['ensembleMembers']} networks, each derived-feature layer +
MLP {HPARAMS['hidden']} (ReLU, dropout {HPARAMS['dropout']}) with 6 sigmoid outputs, AdamW (lr
{HPARAMS['lr']}, weight decay {HPARAMS['weightDecay']}), {HPARAMS['epochs']} epochs fixed in advance, batch
{HPARAMS['batchSize']}, unweighted binary cross-entropy summed over the 6 labels.
"""),
    ]
    write_model_card(out, 'machine-failure v1 (manufacturing)', sections)


if __name__ == '__main__':
    main()
