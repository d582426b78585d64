#!/usr/bin/python3
"""Train manufacturing/turbofan-rul v1: remaining useful life (cycles) of a turbofan engine from a
window of its last 30 cycles (NASA C-MAPSS FD001).

Usage: python3 training/manufacturing/turbofan_rul.py [TRAIN_FD001.txt] [--out DIR] [--seed 42]

Engines are split 80/20 BY ENGINE (never by row or window), seeded. Settings and sensors whose
training standard deviation is below 0.01 (constant or quantisation noise in FD001) are dropped;
the rest are standardised with training-engine mean/std. Target: RUL = last cycle - cycle, capped
at 125. Metrics are recomputed from the ONNX outputs (onnxruntime-node).
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (start_run, DATASETS_DIR, REPO_ROOT, export_onnx, feature_entry, last_max_abs_diff, md_table,  # noqa: E402
                    ort_parity, rounded, standardize, write_manifest, write_model_card)
from common.tabular import predict  # noqa: E402

WINDOW = 30
RUL_CAP = 125
MIN_STD = 0.01
VAL_FRACTION = 0.2
ENSEMBLE = 3
HPARAMS = {'conv': [32, 32], 'kernel': 5, 'dense': 32, 'dropout': 0.3, 'epochs': 20, 'lr': 1e-3,
           'weightDecay': 1e-2, 'batchSize': 256, 'ensembleMembers': ENSEMBLE, 'loss': 'MSE on RUL / 125'}
COLUMNS = ['unit', 'cycle', 'setting1', 'setting2', 'setting3'] + [f's{i}' for i in range(1, 22)]
SENSOR_MEANING = {
    's1': ('T2', 'K', 'Total temperature at fan inlet'), 's2': ('T24', 'K', 'Total temperature at LPC outlet'),
    's3': ('T30', 'K', 'Total temperature at HPC outlet'), 's4': ('T50', 'K', 'Total temperature at LPT outlet'),
    's5': ('P2', 'psia', 'Pressure at fan inlet'), 's6': ('P15', 'psia', 'Total pressure in bypass-duct'),
    's7': ('P30', 'psia', 'Total pressure at HPC outlet'), 's8': ('Nf', 'rpm', 'Physical fan speed'),
    's9': ('Nc', 'rpm', 'Physical core speed'), 's10': ('epr', 'ratio', 'Engine pressure ratio (P50/P2)'),
    's11': ('Ps30', 'psia', 'Static pressure at HPC outlet'), 's12': ('phi', 'pps/psi', 'Ratio of fuel flow to Ps30'),
    's13': ('NRf', 'rpm', 'Corrected fan speed'), 's14': ('NRc', 'rpm', 'Corrected core speed'),
    's15': ('BPR', 'ratio', 'Bypass ratio'), 's16': ('farB', 'ratio', 'Burner fuel-air ratio'),
    's17': ('htBleed', 'count', 'Bleed enthalpy'), 's18': ('Nf_dmd', 'rpm', 'Demanded fan speed'),
    's19': ('PCNfR_dmd', 'rpm', 'Demanded corrected fan speed'), 's20': ('W31', 'lbm/s', 'HPT coolant bleed'),
    's21': ('W32', 'lbm/s', 'LPT coolant bleed'),
    'setting1': ('setting1', 'operational setting', 'Operational setting 1 (altitude-related)'),
    'setting2': ('setting2', 'operational setting', 'Operational setting 2 (Mach-related)'),
    'setting3': ('setting3', 'operational setting', 'Operational setting 3 (throttle resolver angle)'),
}


class RulNet(nn.Module):
    """[B, 30, F] standardised window -> Conv1d x2 -> flatten -> dense -> RUL / 125."""

    def __init__(self, n_feat):
        super().__init__()
        c1, c2 = HPARAMS['conv']
        k = HPARAMS['kernel']
        self.conv = nn.Sequential(nn.Conv1d(n_feat, c1, k, padding=k // 2), nn.ReLU(),
                                  nn.Conv1d(c1, c2, k, padding=k // 2), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * WINDOW, HPARAMS['dense']), nn.ReLU(),
                                  nn.Dropout(HPARAMS['dropout']), nn.Linear(HPARAMS['dense'], 1))

    def forward(self, w):
        return self.head(self.conv(w.transpose(1, 2)))


class RulEnsemble(nn.Module):
    """Mean of the members, scaled to cycles and clipped to [0, RUL_CAP]."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, window):
        y = torch.stack([m(window) for m in self.members], 0).mean(0)
        return torch.clamp(y * RUL_CAP, 0.0, float(RUL_CAP))


def make_windows(x: np.ndarray, units: np.ndarray, rul: np.ndarray, pad: bool):
    """Sliding windows of WINDOW cycles per engine (oldest first). With ``pad``, windows ending
    before cycle WINDOW are left-padded by repeating the engine's first reading."""
    ws, ys, us, full = [], [], [], []
    for u in np.unique(units):
        idx = np.where(units == u)[0]
        xu, ru = x[idx], rul[idx]
        start = 0 if pad else WINDOW - 1
        for end in range(start, len(idx)):
            lo = end - WINDOW + 1
            if lo >= 0:
                w = xu[lo:end + 1]
            else:
                w = np.concatenate([np.repeat(xu[:1], -lo, 0), xu[:end + 1]], 0)
            ws.append(w)
            ys.append(ru[end])
            us.append(u)
            full.append(lo >= 0)
    return (np.stack(ws).astype(np.float32), np.array(ys, dtype=np.float32), np.array(us), np.array(full))


def nasa_score(err: np.ndarray) -> float:
    """PHM08 asymmetric score (pred - true): late predictions cost more."""
    return float(np.sum(np.where(err < 0, np.exp(-err / 13.0) - 1, np.exp(err / 10.0) - 1)))


def alarm_stats(true, pred, limit):
    t = true <= limit
    p = pred <= limit
    tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
    return {'precision': tp / (tp + fp) if tp + fp else 1.0, 'recall': tp / (tp + fn) if tp + fn else 0.0,
            'tp': tp, 'fp': fp, 'fn': fn}


def main():
    args, out, t0 = start_run(__doc__, DATASETS_DIR / 'cmapss-fd001' / 'train_FD001.txt', REPO_ROOT / 'models' / 'manufacturing' / 'turbofan-rul' / '1')

    df = pd.read_csv(args.data, sep=r'\s+', header=None)
    df = df.iloc[:, :len(COLUMNS)]
    df.columns = COLUMNS
    df = df.sort_values(['unit', 'cycle']).reset_index(drop=True)
    df['rul'] = (df.groupby('unit')['cycle'].transform('max') - df['cycle']).clip(upper=RUL_CAP)
    units = np.sort(df['unit'].unique())
    rng = np.random.RandomState(args.seed)
    val_units = np.sort(rng.choice(units, size=int(round(len(units) * VAL_FRACTION)), replace=False))
    train_units = np.setdiff1d(units, val_units)
    is_tr = df['unit'].isin(train_units).to_numpy()

    candidates = COLUMNS[2:]
    std = df.loc[is_tr, candidates].std(ddof=0)
    keep = [c for c in candidates if std[c] >= MIN_STD]
    dropped = [c for c in candidates if c not in keep]
    feats = []
    for c in keep:
        sym, unit, meaning = SENSOR_MEANING[c]
        raw = df.loc[is_tr, c].to_numpy(dtype=np.float64)
        feats.append(feature_entry(c, c, 'none', raw, raw, unit, f'{sym}: {meaning}'))
    x = standardize(df[keep].to_numpy(dtype=np.float64), feats)
    u = df['unit'].to_numpy()
    rul = df['rul'].to_numpy(dtype=np.float64)
    w_tr, y_tr, _, _ = make_windows(x[is_tr], u[is_tr], rul[is_tr], pad=True)
    w_va, y_va, u_va, _ = make_windows(x[~is_tr], u[~is_tr], rul[~is_tr], pad=False)
    w_vp, y_vp, _, full_vp = make_windows(x[~is_tr], u[~is_tr], rul[~is_tr], pad=True)

    members = []
    xt, yt = torch.from_numpy(w_tr), torch.from_numpy(y_tr / RUL_CAP)[:, None]
    for k in range(ENSEMBLE):
        torch.manual_seed(args.seed * 100 + k)
        gen = torch.Generator().manual_seed(args.seed * 100 + k)
        m = RulNet(len(keep))
        opt = torch.optim.AdamW(m.parameters(), lr=HPARAMS['lr'], weight_decay=HPARAMS['weightDecay'])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, HPARAMS['epochs'])
        for _ in range(HPARAMS['epochs']):
            m.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), HPARAMS['batchSize']):
                b = perm[i:i + HPARAMS['batchSize']]
                opt.zero_grad()
                loss = nn.functional.mse_loss(m(xt[b]), yt[b])
                loss.backward()
                opt.step()
            sched.step()
        members.append(m.eval())
    model = RulEnsemble(members).eval()
    train_seconds = time.time() - t0

    onnx_path = export_onnx(model, {'window': w_va[:8]}, out / 'model.onnx', ['rul'])
    ort = ort_parity(onnx_path, {'window': w_va}, {'rul': predict(model, w_va)})
    parity = dict(last_max_abs_diff)
    pred = ort['rul'][:, 0].astype(np.float64)
    err = pred - y_va
    ort_p = ort_parity(onnx_path, {'window': w_vp[~full_vp]}, {'rul': predict(model, w_vp[~full_vp])})
    err_pad = ort_p['rul'][:, 0].astype(np.float64) - y_vp[~full_vp]
    last = np.array([np.where(u_va == e)[0].max() for e in val_units])
    crit = y_va <= 50
    pred_tr = predict(model, w_tr)[:, 0]
    metrics = {
        'split': 'validation = %d held-out engines (seeded by engine, never by row/window)' % len(val_units),
        'validation': {
            'rmse': float(np.sqrt(np.mean(err ** 2))), 'mae': float(np.mean(np.abs(err))),
            'bias': float(np.mean(err)), 'nasaScore': nasa_score(err), 'nasaScorePerWindow': nasa_score(err) / len(err),
            'windows': int(len(err)), 'engines': int(len(val_units)),
            'rmseTrueRulAtMost50': float(np.sqrt(np.mean(err[crit] ** 2))),
            'rmseLastWindow': float(np.sqrt(np.mean(err[last] ** 2))),
            'rmsePaddedShortHistory': float(np.sqrt(np.mean(err_pad ** 2))) if len(err_pad) else None,
            'paddedWindows': int(len(err_pad)),
        },
        'train': {'rmse': float(np.sqrt(np.mean((pred_tr - y_tr) ** 2))), 'windows': int(len(y_tr))},
        'parityMaxAbsDiff': max(parity['rul'], last_max_abs_diff['rul']),
        'trainingSeconds': train_seconds,
        'computedFrom': 'onnxruntime-node outputs of model.onnx',
    }
    thresholds = {
        'rul': {'raise': 30, 'clear': 40,
                'rule': 'raise a maintenance alarm when predicted rul <= raise cycles; clear only when it rises above '
                        'clear (hysteresis)',
                'atRaise': alarm_stats(y_va, pred, 30), 'atClear': alarm_stats(y_va, pred, 40),
                'note': 'precision/recall of "true RUL <= limit" among held-out windows predicted <= limit'},
    }
    metrics = rounded(metrics)
    thresholds = rounded(thresholds)
    provenance = {
        'dataset': 'cmapss-fd001/train_FD001.txt',
        'source': 'NASA Ames Prognostics Center of Excellence, C-MAPSS Turbofan Engine Degradation Simulation Data '
                  'Set, FD001 (A. Saxena, K. Goebel, D. Simon, N. Eklund, 2008)',
        'license': 'public domain (US Government work, NASA Open Data)',
        'trainingScript': 'training/manufacturing/turbofan_rul.py',
        'split': 'by engine: numpy RandomState(%d).choice of %d of %d engines for validation: %s; the remaining %d '
                 'engines train' % (args.seed, len(val_units), len(units), ','.join(str(int(v)) for v in val_units),
                                    len(train_units)),
        'validationEngines': [int(v) for v in val_units],
        'seed': args.seed,
        'rows': int(len(df)),
        'hyperparameters': HPARAMS,
        'framework': 'torch %s, exported with opset 17' % torch.__version__,
    }
    manifest = {
        'name': 'turbofan-rul', 'version': '1', 'domain': 'manufacturing', 'task': 'regression',
        'default': True,
        'description': 'Remaining useful life (cycles, capped at 125) of a turbofan engine from its last 30 cycles of '
                       '%d sensor readings (C-MAPSS FD001: one operating condition, HPC degradation).' % len(keep),
        'inputs': [{'name': 'window', 'dtype': 'float32', 'shape': [-1, WINDOW, len(keep)],
                    'description': 'last %d cycles, oldest first, of the sensors in preprocessing.features order, each '
                                   'standardised as (raw - mean) / scale' % WINDOW}],
        'outputs': [{'name': 'rul', 'dtype': 'float32', 'shape': [-1, 1],
                     'description': 'remaining useful life in cycles, clipped to [0, 125]'}],
        'preprocessing': {'type': 'standardize', 'features': feats, 'windowLength': WINDOW, 'rulCap': RUL_CAP,
                          'layout': '[batch, cycle (oldest first, newest last), feature]',
                          'padding': 'with fewer than %d cycles, left-pad by repeating the oldest reading (trained '
                                     'that way; less accurate)' % WINDOW,
                          'droppedColumns': dropped,
                          'dropRule': 'settings/sensors with training standard deviation < %g' % MIN_STD},
        'postprocessing': {'type': 'regression', 'unit': 'cycles', 'min': 0, 'max': RUL_CAP,
                           'note': 'true RUL above 125 cycles is reported as 125 (piece-wise linear target)'},
        'labels': ['rul'],
        'thresholds': thresholds,
        'provenance': provenance,
        'metrics': metrics,
        'batching': {'maxBatchSize': 256, 'maxQueueDelayMs': 1},
    }
    write_manifest(out, manifest)
    write_card(out, feats, dropped, metrics, thresholds, provenance, len(train_units), val_units)
    v = metrics['validation']
    print(f'turbofan-rul: RMSE {v["rmse"]:.2f} MAE {v["mae"]:.2f} (train {metrics["train"]["rmse"]:.2f}), '
          f'RMSE@RUL<=50 {v["rmseTrueRulAtMost50"]:.2f}, padded {v["rmsePaddedShortHistory"]}, '
          f'parity {metrics["parityMaxAbsDiff"]:.2e}, {len(keep)} features, {time.time() - t0:.0f}s')


def write_card(out, feats, dropped, m, th, prov, n_train_units, val_units):
    v = m['validation']
    feat_rows = [(f['name'], f['unit'], f['description'], f'{f["min"]:g}-{f["max"]:g}') for f in feats]
    r = th['rul']
    sections = [
        ('Data source and licence', f"""
NASA Ames Prognostics Center of Excellence, *C-MAPSS Turbofan Engine Degradation Simulation Data
Set* (A. Saxena, K. Goebel, D. Simon, N. Eklund, 2008), sub-set FD001 (one operating condition, one
fault mode: HPC degradation). US Government work, public domain (NASA Open Data). The copy used
(`../shared/datasets/cmapss-fd001/train_FD001.txt`, 100 engines run to failure) is the training part
of a fixed split; the rest is held back for independent evaluation. Not in this repository.
"""),
        ('Intended use', """
Reference model for the gateway: an estimate of remaining useful life (in cycles) of a simulated
turbofan engine from its last 30 cycles, to plan maintenance, with an engineer deciding.

Out of scope: real aircraft engines or any airworthiness / safety decision; other operating
conditions or fault modes (FD002-FD004 have six operating conditions and a second fault mode);
precise life estimates early in life (the target is capped at 125 cycles: "125" means "healthy,
at least about 125 cycles left").
"""),
        ('Features', f"""
Input `window` float32 [-1, 30, {len(feats)}]: the last 30 cycles, oldest first, newest last, of the
sensors below, each standardised as `(raw - mean) / scale` with the training-engine mean and
standard deviation in `model.json` (`preprocessing.features`; `windowLength` 30, `rulCap` 125).
Dropped because their training standard deviation is below 0.01 (constant, or noise in
FD001's single operating condition): {', '.join(dropped)}. With fewer than 30 cycles of history,
left-pad by repeating the oldest reading (the model saw such windows in training; accuracy is lower).

""" + md_table(['column', 'unit', 'meaning (C-MAPSS symbol)', 'range in training'], feat_rows)),
        ('Validation metrics', f"""
Split **by engine**: {len(val_units)} engines held out (numpy `RandomState({prov['seed']})`, engines
{', '.join(str(int(e)) for e in val_units)}), {n_train_units} engines train; no window of a
validation engine is seen in training. Evaluated on every full 30-cycle window of the held-out
engines ({v['windows']} windows), target RUL capped at 125, from the ONNX model's outputs in
onnxruntime-node (max abs difference to PyTorch {m['parityMaxAbsDiff']:.2g}).

| metric | value |
| --- | --- |
| RMSE (cycles) | {v['rmse']:.2f} |
| MAE (cycles) | {v['mae']:.2f} |
| mean error (pred - true) | {v['bias']:+.2f} |
| RMSE where true RUL <= 50 | {v['rmseTrueRulAtMost50']:.2f} |
| RMSE on each engine's last window (true RUL 0) | {v['rmseLastWindow']:.2f} |
| RMSE on left-padded short histories (< 30 cycles, {v['paddedWindows']} windows) | {v['rmsePaddedShortHistory']:.2f} |
| PHM08 score per window | {v['nasaScorePerWindow']:.3f} |
| train RMSE (overfitting check) | {m['train']['rmse']:.2f} |

Published reference: test RMSE about 12-13 cycles for 1D-CNN/LSTM on the official FD001 test set
(last window of truncated engines); this all-window validation on 20 engines is not the same
protocol.

Alarm thresholds (hysteresis): raise a maintenance alarm when predicted RUL <= {r['raise']} cycles
(on validation windows: precision {r['atRaise']['precision']:.3f}, recall {r['atRaise']['recall']:.3f} for
"true RUL <= {r['raise']}"), clear it only when the prediction rises above {r['clear']} cycles.
"""),
        ('Limitations', """
- Simulated data (C-MAPSS), one operating condition and one fault mode; 100 engines only.
- The cap at 125 cycles hides how healthy an early-life engine is; errors are largest early in
  life and on engines that degrade unusually fast or slow.
- Needs 30 consecutive cycles with the same sensor set and units; missing cycles or sensor faults
  are not handled.
- Validation uses every window of 20 engines, so numbers are correlated within an engine and have
  wide uncertainty.
"""),
        ('Fairness', """
No people are described by this data (engine sensor readings only), so there are no demographic
groups to assess. Errors are not uniform across engines: over-estimating RUL (late alarms) is the
costly direction, which the PHM08 score above weights more heavily.
"""),
        ('Training', f"""
`python3 training/manufacturing/turbofan_rul.py` (seed {prov['seed']}, CPU, one thread, about
{m['trainingSeconds']:.0f} s). Mean of {HPARAMS['ensembleMembers']} 1D-CNNs (Conv1d {HPARAMS['conv']} kernel
{HPARAMS['kernel']}, flatten, dense {HPARAMS['dense']}, dropout {HPARAMS['dropout']}), MSE on RUL/125, AdamW (lr
{HPARAMS['lr']}, weight decay {HPARAMS['weightDecay']}, cosine schedule), {HPARAMS['epochs']} epochs fixed in
advance, batch {HPARAMS['batchSize']}; training windows include left-padded early-life windows.
Output clipped to [0, 125] in the graph.
"""),
    ]
    write_model_card(out, 'turbofan-rul v1 (manufacturing)', sections)


if __name__ == '__main__':
    main()
