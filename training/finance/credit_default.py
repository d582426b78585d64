#!/usr/bin/python3
"""Train finance/credit-default v1: probability of default next month (UCI credit card clients).

Usage: python3 training/finance/credit_default.py [CSV] [--out DIR] [--seed 42]

SEX, MARRIAGE and AGE are protected attributes and are NOT model inputs. The same model is also
trained WITH them, only to measure (and report) the AUC cost of leaving them out; that variant is
not exported. Metrics in the manifest and card are recomputed from the ONNX outputs
(onnxruntime-node) on a fixed, seeded, stratified 80/20 split.

The model is the equal-weight mean of two probabilities: a 5-member MLP ensemble and gradient-boosted
trees (scikit-learn HistGradientBoosting, exported as tensor operations by common.tabular.BoostedTrees).
The blend was chosen by 5-fold cross-validation on the training part only; every run repeats that
cross-validation and writes it in the manifest (metrics.modelSelection), so the choice can be checked.
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (start_run, apply_transform, DATASETS_DIR, REPO_ROOT, best_f1_threshold, binary_summary, bootstrap_auc_diff,  # noqa: E402
                    export_onnx, feature_entry, last_max_abs_diff, md_table, ort_parity, rounded,
                    standardize, threshold_for_precision, threshold_stats, write_manifest,
                    write_model_card)
from common.tabular import BoostedTrees, fit_members, MLP, SigmoidEnsemble, predict  # noqa: E402
from torch import nn  # noqa: E402

PROTECTED = ['SEX', 'MARRIAGE', 'AGE']
PAY = ['PAY_0', 'PAY_2', 'PAY_3', 'PAY_4', 'PAY_5', 'PAY_6']
MONTHS = {'0': 'September', '2': 'August', '3': 'July', '4': 'June', '5': 'May', '6': 'April'}
BILL_MONTH = {1: 'September', 2: 'August', 3: 'July', 4: 'June', 5: 'May', 6: 'April'}
GRADES = [('A', 0.0, 0.10), ('B', 0.10, 0.20), ('C', 0.20, 0.35), ('D', 0.35, 0.60), ('E', 0.60, 1.0)]
ENSEMBLE = 5
TREES = {'learning_rate': 0.05, 'max_iter': 300, 'max_leaf_nodes': 7, 'min_samples_leaf': 50,
         'l2_regularization': 1.0, 'early_stopping': False}
TREE_WEIGHT = 0.5
CV_FOLDS = 5
HPARAMS = {'hidden': [64, 64], 'dropout': 0.3, 'epochs': 30, 'lr': 1e-3, 'weightDecay': 1e-3, 'batchSize': 256,
           'ensembleMembers': ENSEMBLE,
           'derivedFeatures': ['signed log of each BILL_AMTi: sign(b)*ln(1+|b|)',
                               'utilisation BILL_AMTi / LIMIT_BAL clipped to [-0.5, 1.5]'],
           'trees': dict(TREES, inputs='the standardised features and the six utilisations (bill / credit '
                                       'limit rounded to NT$ 1,000)',
                         implementation='scikit-learn HistGradientBoostingClassifier'),
           'blend': 'probability = %.1f * MLP ensemble + %.1f * trees' % (1 - TREE_WEIGHT, TREE_WEIGHT)}
UTIL_CLIP = (-0.5, 1.5)
LIMIT_STEP = 1000.0


def _slog(v):
    return np.sign(v) * np.log1p(np.abs(v))


def derived_raw(limit, bills):
    """[N, 12] derived features (numpy): signed-log bills, then utilisation bill / limit."""
    return np.concatenate([_slog(bills), np.clip(bills / limit[:, None], *UTIL_CLIP)], 1)


def limit_and_bills(x, mean, scale, i_limit, i_bills, step=None):
    """(credit limit [N, 1], bills [N, 6]) in NT$, from standardised inputs un-standardised in the graph;
    the limit rounded to ``step`` NT$ (and at least one step) when a step is given."""
    raw = x * scale + mean
    limit = torch.exp(raw[:, i_limit:i_limit + 1]) - 1.0  # expm1 has no ONNX export
    if step is not None:
        limit = torch.clamp(torch.round(limit / step), min=1.0) * step
    return limit, raw[:, i_bills]


def utilisation(limit, bills):
    return torch.clamp(bills / limit, UTIL_CLIP[0], UTIL_CLIP[1])


def bill_features(x, mean, scale, i_limit, i_bills):
    """(signed-log bills, utilisation) [N, 6] each, from standardised inputs un-standardised in the graph."""
    limit, bills = limit_and_bills(x, mean, scale, i_limit, i_bills)
    return torch.sign(bills) * torch.log1p(torch.abs(bills)), utilisation(limit, bills)


class CreditNet(nn.Module):
    """standardised features -> (features + standardised derived bill features) -> MLP -> logit.

    The derived features are computed in the graph from the un-standardised inputs, so callers send
    only the standardised `features` of the manifest."""

    def __init__(self, n_in, i_limit, i_bills, mean, scale, d_mean, d_scale):
        super().__init__()
        self.i_limit = i_limit
        self.i_bills = list(i_bills)
        for name, v in (('mean', mean), ('scale', scale), ('d_mean', d_mean), ('d_scale', d_scale)):
            self.register_buffer(name, torch.tensor(np.asarray(v), dtype=torch.float32))
        self.mlp = MLP(n_in + len(d_mean), HPARAMS['hidden'], 1, HPARAMS['dropout'])

    def forward(self, x):
        slog, util = bill_features(x, self.mean, self.scale, self.i_limit, self.i_bills)
        d = (torch.cat([slog, util], 1) - self.d_mean) / self.d_scale
        return self.mlp(torch.cat([x, d], 1))


class TreeInputs(nn.Module):
    """standardised features -> [features, utilisation of the six statements]: what the trees split on
    (the signed-log bills add nothing to trees, which are invariant to monotone transforms).

    Here the credit limit recovered from its log is rounded to NT$ 1,000 (and at least 1,000): exp()
    differs by an ulp between PyTorch and onnxruntime, and a branch must not depend on that. The
    rounded limit and the rest (multiply, add, divide, clamp) are exact in both, so the graph and
    scikit-learn see bit-identical utilisations. The data's limits are multiples of NT$ 10,000, which
    the rounding keeps exactly up to the largest limit the API accepts."""

    def __init__(self, i_limit, i_bills, mean, scale, **_):
        super().__init__()
        self.i_limit = i_limit
        self.i_bills = list(i_bills)
        self.register_buffer('mean', torch.tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer('scale', torch.tensor(np.asarray(scale), dtype=torch.float32))

    def forward(self, x):
        limit, bills = limit_and_bills(x, self.mean, self.scale, self.i_limit, self.i_bills, LIMIT_STEP)
        return torch.cat([x, utilisation(limit, bills)], 1)


class CreditBlend(nn.Module):
    """probability = (1 - w) * mean of the MLP members' probabilities + w * sigmoid(trees)."""

    def __init__(self, mlps, tree_inputs, trees, tree_weight):
        super().__init__()
        self.mlps, self.tree_inputs, self.trees, self.tree_weight = mlps, tree_inputs, trees, tree_weight

    def forward(self, x):
        p_trees = torch.sigmoid(self.trees(self.tree_inputs(x)))
        return (1 - self.tree_weight) * self.mlps(x) + self.tree_weight * p_trees


def feature_specs(with_protected: bool):
    """(name, source column, transform, unit, description) in input order."""
    specs = [('limit_bal_log', 'LIMIT_BAL', 'log1p', 'NT$',
              'Amount of given credit (individual and family/supplementary), log1p-transformed')]
    for v, label in [(1, 'graduate school'), (2, 'university'), (3, 'high school')]:
        specs.append((f'education_{v}', 'EDUCATION', f'one_hot:{v}', 'indicator',
                      f'Education is {label} (codes 0, 4, 5, 6 = other/unknown give all zeros)'))
    for p in PAY:
        month = MONTHS[p.split('_')[1]]
        specs.append((p.lower(), p, 'none', 'months',
                      f'Repayment status in {month} 2005: -2 no consumption, -1 paid in full, 0 revolving credit, '
                      '1..9 months of payment delay'))
        for v, label in [(-2, 'no consumption'), (-1, 'paid in full'), (0, 'revolving credit')]:
            specs.append((f'{p.lower()}_is_{str(v).replace("-", "m")}', p, f'one_hot:{v}', 'indicator',
                          f'Repayment status in {month} 2005 is {v} ({label})'))
    for i in range(1, 7):
        specs.append((f'bill_amt{i}', f'BILL_AMT{i}', 'none', 'NT$',
                      f'Amount of bill statement in {BILL_MONTH[i]} 2005 (may be negative: credit balance)'))
    for i in range(1, 7):
        specs.append((f'pay_amt{i}_log', f'PAY_AMT{i}', 'log1p', 'NT$',
                      f'Amount paid in {BILL_MONTH[i]} 2005, log1p-transformed'))
    if with_protected:
        specs += [('sex_female', 'SEX', 'one_hot:2', 'indicator', 'PROTECTED: sex is female'),
                  ('marriage_married', 'MARRIAGE', 'one_hot:1', 'indicator', 'PROTECTED: married'),
                  ('marriage_single', 'MARRIAGE', 'one_hot:2', 'indicator', 'PROTECTED: single'),
                  ('age', 'AGE', 'none', 'years', 'PROTECTED: age')]
    return specs



def build(df: pd.DataFrame, train_idx: np.ndarray, with_protected: bool):
    specs = feature_specs(with_protected)
    entries, cols = [], []
    for name, source, transform, unit, desc in specs:
        raw = df[source].to_numpy(dtype=np.float64)
        tr = apply_transform(raw, transform)
        entries.append(feature_entry(name, source, transform, raw[train_idx], tr[train_idx], unit, desc))
        cols.append(tr)
    x = standardize(np.stack(cols, 1), entries)
    names = [e['name'] for e in entries]
    i_limit = names.index('limit_bal_log')
    i_bills = [names.index(f'bill_amt{i}') for i in range(1, 7)]
    d = derived_raw(df['LIMIT_BAL'].to_numpy(np.float64)[train_idx],
                    df[[f'BILL_AMT{i}' for i in range(1, 7)]].to_numpy(np.float64)[train_idx])
    arch = dict(n_in=len(entries), i_limit=i_limit, i_bills=i_bills, mean=[e['mean'] for e in entries],
                scale=[e['scale'] for e in entries], d_mean=d.mean(0), d_scale=d.std(0))
    return x, entries, arch


def train_ensemble(x_tr, y_tr, seed, arch):
    members = fit_members(lambda: CreditNet(**arch), x_tr, y_tr, HPARAMS, ENSEMBLE, seed)
    return SigmoidEnsemble(members).eval()


def train_model(x_tr, y_tr, seed, arch):
    """The exported model: the MLP ensemble and the trees, blended. The trees are fitted on the
    utilisations as the float32 graph computes them, so graph and scikit-learn see the same values."""
    mlps = train_ensemble(x_tr, y_tr, seed, arch)
    tree_inputs = TreeInputs(**arch).eval()
    z = predict(tree_inputs, x_tr)
    gb = HistGradientBoostingClassifier(random_state=seed, **TREES).fit(z.astype(np.float64), y_tr)
    trees = BoostedTrees(gb).eval()
    check = predict(trees, z)[:, 0]
    gap = float(np.abs(check - gb.decision_function(z.astype(np.float64))).max())
    if gap > 1e-4:
        raise AssertionError(f'BoostedTrees differs from scikit-learn by {gap:.3g} on the training rows')
    return CreditBlend(mlps, tree_inputs, trees, TREE_WEIGHT).eval()


def model_selection(df, y, tr, seed):
    """5-fold stratified cross-validation on the training part only (the validation split is not
    touched): AUC of the MLP ensemble, the trees and the blend, per fold, mean and std."""
    folds = {'mlpEnsemble': [], 'trees': [], 'blend': []}
    for a, b in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed).split(tr, y[tr]):
        f_tr, f_va = tr[a], tr[b]
        x, _, arch = build(df, f_tr, with_protected=False)
        model = train_model(x[f_tr], y[f_tr], seed, arch)
        p_mlp = predict(model.mlps, x[f_va])[:, 0]
        p_trees = 1 / (1 + np.exp(-predict(model.trees, predict(model.tree_inputs, x[f_va]))[:, 0]))
        p = predict(model, x[f_va])[:, 0]
        for k, v in (('mlpEnsemble', p_mlp), ('trees', p_trees), ('blend', p)):
            folds[k].append(float(roc_auc_score(y[f_va], v)))
    return {'method': '%d-fold stratified cross-validation on the training part (seed %d); AUC per candidate'
                      % (CV_FOLDS, seed),
            'candidates': {k: {'mean': float(np.mean(v)), 'std': float(np.std(v)), 'folds': v} for k, v in folds.items()},
            'chosen': 'blend'}


def group_table(y, p, groups: dict, review: float):
    rows = {}
    for gname, mask in groups.items():
        s = binary_summary(y[mask], p[mask])
        st = threshold_stats(y[mask], p[mask], review)
        rows[gname] = {'n': int(mask.sum()), 'defaultRate': s['prevalence'], 'meanPrediction': s['meanPrediction'],
                       'auc': s['auc'], 'flaggedRateAtReview': st['flaggedRate'], 'recallAtReview': st['recall'],
                       'falsePositiveRateAtReview': st['fp'] / max(1, int((y[mask] == 0).sum()))}
    return rows


def main():
    args, out, t0 = start_run(__doc__, DATASETS_DIR / 'credit-default' / 'UCI_Credit_Card.csv', REPO_ROOT / 'models' / 'finance' / 'credit-default' / '1')

    df = pd.read_csv(args.data)
    y = df['default'].to_numpy().astype(int)
    idx = np.arange(len(df))
    tr, va = train_test_split(idx, test_size=0.2, stratify=y, random_state=args.seed)

    selection = model_selection(df, y, tr, args.seed)
    x, feats, arch = build(df, tr, with_protected=False)
    model = train_model(x[tr], y[tr], args.seed, arch)
    xp, feats_p, arch_p = build(df, tr, with_protected=True)
    model_p = train_model(xp[tr], y[tr], args.seed, arch_p)
    p_with = predict(model_p, xp[va])[:, 0].astype(np.float64)
    train_seconds = time.time() - t0

    onnx_path = export_onnx(model, {'features': x[va[:8]]}, out / 'model.onnx', ['probability'])
    torch_val = predict(model, x[va])
    ort = ort_parity(onnx_path, {'features': x[va]}, {'probability': torch_val})
    parity = dict(last_max_abs_diff)
    p = ort['probability'][:, 0].astype(np.float64)
    yv = y[va]

    summary = binary_summary(yv, p)
    summary_with = binary_summary(yv, p_with)
    cost = bootstrap_auc_diff(yv, p_with, p, seed=args.seed)
    train_summary = binary_summary(y[tr], predict(model, x[tr])[:, 0])

    review_t = best_f1_threshold(yv, p)
    decline_t = max(threshold_for_precision(yv, p, 0.70), round(review_t + 0.01, 2))
    thresholds = {
        'policy': 'approve if probability < review.value; refer to manual review if review.value <= probability < '
                  'decline.value; decline if probability >= decline.value. precision/recall are for flagging '
                  'defaulters at probability >= value; approvalRate is the share of validation applicants below value.',
        'review': rounded(threshold_stats(yv, p, review_t)),
        'decline': rounded(threshold_stats(yv, p, decline_t)),
        'reviewRule': 'maximum F1 on validation',
        'declineRule': 'lowest threshold with precision >= 0.70 on validation',
    }
    grades = []
    for g, lo, hi in GRADES:
        mask = (p >= lo) & ((p < hi) if hi < 1.0 else (p <= 1.0))
        grades.append({'grade': g, 'min': lo, 'max': hi, 'share': float(mask.mean()),
                       'observedDefaultRate': float(yv[mask].mean()) if mask.any() else None, 'n': int(mask.sum())})
    thresholds['grades'] = rounded(grades)

    vdf = df.iloc[va]
    age = vdf['AGE'].to_numpy()
    fairness = {
        'sex': group_table(yv, p, {'male': vdf['SEX'].to_numpy() == 1, 'female': vdf['SEX'].to_numpy() == 2}, review_t),
        'marriage': group_table(yv, p, {'married': vdf['MARRIAGE'].to_numpy() == 1,
                                        'single': vdf['MARRIAGE'].to_numpy() == 2,
                                        'other': ~np.isin(vdf['MARRIAGE'].to_numpy(), [1, 2])}, review_t),
        'age': group_table(yv, p, {'<30': age < 30, '30-44': (age >= 30) & (age < 45), '>=45': age >= 45}, review_t),
    }
    metrics = rounded({
        'split': 'validation (stratified 80/20, seed %d)' % args.seed,
        'validation': summary,
        'modelSelection': selection,
        'train': {'auc': train_summary['auc'], 'n': train_summary['n']},
        'protectedAttributes': {
            'excluded': PROTECTED,
            'aucWithout': summary['auc'], 'aucWith': summary_with['auc'],
            'aucCost': summary_with['auc'] - summary['auc'],
            'aucCostBootstrap': cost,
            'note': 'aucWith is the same architecture and training recipe with SEX, MARRIAGE, AGE added as inputs '
                    '(not exported); aucCost = aucWith - aucWithout on the same validation rows.',
        },
        'fairness': fairness,
        'parityMaxAbsDiff': parity['probability'],
        'trainingSeconds': train_seconds,
        'computedFrom': 'onnxruntime-node outputs of model.onnx',
    })

    provenance = {
        'dataset': 'credit-default/UCI_Credit_Card.csv',
        'source': 'UCI Machine Learning Repository, "default of credit card clients" (Yeh & Lien, 2009), '
                  'Taiwan, April-September 2005; https://archive.ics.uci.edu/dataset/350',
        'license': 'CC BY 4.0',
        'trainingScript': 'training/finance/credit_default.py',
        'split': 'stratified on default, 80%% train / 20%% validation, sklearn train_test_split(random_state=%d); '
                 '%d train rows, %d validation rows' % (args.seed, len(tr), len(va)),
        'seed': args.seed,
        'rows': int(len(df)),
        'hyperparameters': HPARAMS,
        'framework': 'torch %s, exported with opset 17' % torch.__version__,
    }
    manifest = {
        'name': 'credit-default', 'version': '1', 'domain': 'finance', 'task': 'binary-classification',
        'default': True,
        'description': 'Probability that a credit card client defaults on next month\'s payment, from credit limit, '
                       'education, 6 months of repayment status, bill and payment amounts. Protected attributes '
                       '(sex, marital status, age) are not inputs.',
        'inputs': [{'name': 'features', 'dtype': 'float32', 'shape': [-1, len(feats)],
                    'description': 'standardised features in preprocessing.features order: (transform(raw) - mean) / scale'}],
        'outputs': [{'name': 'probability', 'dtype': 'float32', 'shape': [-1, 1],
                     'description': 'probability of default next month (equal-weight mean of a 5-member MLP '
                                    'ensemble and gradient-boosted trees)'}],
        'preprocessing': {'type': 'standardize', 'features': feats,
                          'excludedColumns': PROTECTED + ['default'],
                          'notes': 'one_hot:<v> is 1.0 when the raw value equals v else 0.0; log1p is ln(1 + raw). '
                                   'The graph also derives signed-log bill amounts and utilisation (bill / limit) '
                                   'internally from the un-standardised inputs.'},
        'postprocessing': {'type': 'probability', 'positiveLabel': 'default',
                           'calibration': 'trained with unweighted BCE at the data prior (%.3f)' % y[tr].mean()},
        'labels': ['default'],
        'thresholds': thresholds,
        'provenance': provenance,
        'metrics': metrics,
        'batching': {'maxBatchSize': 256, 'maxQueueDelayMs': 1},
    }
    write_manifest(out, manifest)
    write_card(out, feats, metrics, thresholds, provenance, len(tr), len(va), y[tr].mean())
    print(f'credit-default: AUC {summary["auc"]:.4f} (with protected {summary_with["auc"]:.4f}, cost '
          f'{summary_with["auc"] - summary["auc"]:+.4f}), AP {summary["averagePrecision"]:.4f}, parity '
          f'{parity["probability"]:.2e}, review {review_t} decline {decline_t}, {time.time() - t0:.0f}s')


def cost_sentence(pa, lower=False):
    text = _cost_sentence(pa)
    return text[0].lower() + text[1:] if lower else text + '.'


def _cost_sentence(pa):
    lo, hi = pa['aucCostBootstrap']['ci95']
    if hi < 0:
        return 'A negative cost means the model without them scored higher: leaving them out lost no accuracy here'
    if lo > 0:
        return 'Leaving them out costs this much discrimination on validation'
    return 'The difference is within validation noise'


def write_card(out, feats, m, th, prov, n_tr, n_va, prior):
    v = m['validation']
    pa = m['protectedAttributes']
    sel = m['modelSelection']
    sel_rows = [({'mlpEnsemble': 'MLP ensemble alone', 'trees': 'gradient-boosted trees alone',
                  'blend': 'equal-weight blend (chosen)'}[k], c['mean'], c['std'], ', '.join(f'{a:.4f}' for a in c['folds']))
                for k, c in sel['candidates'].items()]
    c = sel['candidates']
    blend_wins = sum(b > max(m, t) for b, m, t in zip(c['blend']['folds'], c['mlpEnsemble']['folds'], c['trees']['folds']))
    feat_rows = [(f['name'], f['source'], f['transform'], f['unit'], f['description']) for f in feats]
    th_rows = [(k, th[k]['value'], th[k]['precision'], th[k]['recall'], th[k]['approvalRate'])
               for k in ('review', 'decline')]
    grade_rows = [(g['grade'], f'{g["min"]:.2f}-{g["max"]:.2f}', g['share'], g['observedDefaultRate'])
                  for g in th['grades']]
    fair_rows = []
    for attr, groups in m['fairness'].items():
        for g, r in groups.items():
            fair_rows.append((attr, g, r['n'], r['defaultRate'], r['meanPrediction'], r['auc'],
                              r['flaggedRateAtReview'], r['recallAtReview'], r['falsePositiveRateAtReview']))
    sections = [
        ('Data source and licence', f"""
UCI Machine Learning Repository, *default of credit card clients* (I-C. Yeh and C-H. Lien, 2009):
credit card clients of a bank in Taiwan, April-September 2005, label `default` = default on the
October 2005 payment. Licence: CC BY 4.0. The training copy (`../shared/datasets/credit-default/UCI_Credit_Card.csv`,
{n_tr + n_va} rows, default rate {prior:.3f}) is the training part of a fixed split; about a fifth of the
original data is held back for independent evaluation. The data is not in this repository.
"""),
        ('Intended use', """
Reference model for the inference gateway: a probability of default next month that supports a
*human* credit decision (risk grade, refer-to-review, decline suggestion), for an existing card
holder whose last six months of statements are known.

Out of scope: automated adverse decisions without human review; applicants without six months of
history (new customers); other countries, currencies, products or periods (the data is Taiwan 2005,
amounts in NT$); any use of the score as a measure of a person's worth or character.
"""),
        ('Features', 'Input `features` float32 [-1, %d], in this order, each standardised as '
                     '`(transform(raw) - mean) / scale` with the values in `model.json` '
                     '(`preprocessing.features`, which also gives min/max seen in training and the median '
                     'baseline):\n\n' % len(feats) + md_table(['name', 'column', 'transform', 'unit', 'meaning'],
                                                              feat_rows)
         + '\n\nNot inputs: `SEX`, `MARRIAGE`, `AGE` (protected attributes).'),
        ('Validation metrics', f"""
Split: stratified on `default`, 80 % train ({n_tr} rows) / 20 % validation ({n_va} rows),
`train_test_split(random_state={prov['seed']})`, fixed. All numbers below are computed from the
ONNX model's outputs in onnxruntime-node (max abs difference to PyTorch {m['parityMaxAbsDiff']:.2g}).

| metric | value |
| --- | --- |
| AUC | {v['auc']:.4f} |
| average precision | {v['averagePrecision']:.4f} |
| Brier score | {v['brier']:.4f} |
| mean prediction / observed default rate | {v['meanPrediction']:.4f} / {v['prevalence']:.4f} |
| train AUC (overfitting check) | {m['train']['auc']:.4f} |

Published reference (same data, other splits): AUC about 0.77-0.79 for gradient boosting and
neural networks.

How the model was chosen: by {CV_FOLDS}-fold stratified cross-validation on the training part
only, seed {prov['seed']} (the validation split above played no part; every training run repeats
this and writes it in `metrics.modelSelection`). The blend of the two model families had the
highest mean AUC and beat both of them alone in {blend_wins} of {CV_FOLDS} folds:

""" + md_table(['candidate', 'mean AUC', 'std', 'per fold'], sel_rows) + f"""

Cost of leaving out the protected attributes (same recipe trained with `SEX`, `MARRIAGE`, `AGE` as
extra inputs, evaluated on the same rows): AUC with {pa['aucWith']:.4f}, without {pa['aucWithout']:.4f},
cost = AUC with - AUC without = {pa['aucCost']:+.4f} (paired bootstrap mean
{pa['aucCostBootstrap']['mean']:+.4f}, 95 % interval [{pa['aucCostBootstrap']['ci95'][0]:+.4f},
{pa['aucCostBootstrap']['ci95'][1]:+.4f}]). {cost_sentence(pa)}

Decision thresholds (chosen on validation; `precision`/`recall` for flagging defaulters at
`probability >= value`, `approval rate` = share of applicants below the value). Policy: approve
below `review`, refer to manual review between `review` and `decline`, suggest decline at or above
`decline`. Review = maximum F1; decline = lowest threshold with precision >= 0.70.

""" + md_table(['threshold', 'value', 'precision', 'recall', 'approval rate'], th_rows) + """

Risk grades (probability bands; share of validation applicants and their observed default rate):

""" + md_table(['grade', 'probability', 'share', 'observed default rate'], grade_rows)),
        ('Limitations', """
- Data from one bank in one country in 2005, during a card-debt crisis in Taiwan; default rates and
  behaviour differ elsewhere and today. Re-validate before any real use.
- The probability is calibrated to the training prior (about 22 % defaults); a portfolio with
  another default rate needs recalibration.
- `PAY_*` codes -2/-1/0 are inconsistently documented in the source data; the model takes them as
  given. `EDUCATION` codes 0, 4, 5, 6 (other/unknown) are rare and pooled.
- Inputs outside the training range (`min`/`max` in the manifest) are extrapolation.
- A blend of a 5-member MLP ensemble and 300 gradient-boosted trees: the trees make the score a
  step function of each input, so a small change of one amount can move it by a step. Attributions
  should use occlusion against the `baseline` medians (as the gateway does), not gradients.
"""),
        ('Fairness', f"""
`SEX`, `MARRIAGE` and `AGE` are not inputs (AUC cost of excluding them: {pa['aucCost']:+.4f};
{cost_sentence(pa, lower=True)}). Other
inputs can still act as proxies (e.g. credit limit and education correlate with age and sex), so
excluding them does not guarantee equal outcomes. `EDUCATION` is used; it can be a proxy for
socio-economic status and should be reviewed by the deployer. Validation results by group
(flagged rate, recall and false-positive rate at the review threshold {th['review']['value']}):

""" + md_table(['attribute', 'group', 'n', 'default rate', 'mean prediction', 'AUC', 'flagged rate',
                'recall', 'false-positive rate'], fair_rows) + """

Differences in flagged rate largely follow differences in observed default rate; differences in
recall and false-positive rate between groups should be monitored in production.
"""),
        ('Training', f"""
`python3 training/finance/credit_default.py` (seed {prov['seed']}, CPU, one thread, about
{m['trainingSeconds']:.0f} s, the cross-validation included). The probability is
{1 - TREE_WEIGHT:.1f} x (MLP ensemble) + {TREE_WEIGHT:.1f} x (gradient-boosted trees), weights fixed in advance.

MLP ensemble: mean of {HPARAMS['ensembleMembers']} networks' probabilities; each
un-standardises its inputs in the graph, adds 12 derived features (signed log of the six bill
amounts and utilisation = bill / credit limit clipped to [-0.5, 1.5], standardised with training
statistics) and feeds them with the inputs to an MLP ({HPARAMS['hidden']}, ReLU, dropout {HPARAMS['dropout']}), AdamW (lr {HPARAMS['lr']}, weight decay
{HPARAMS['weightDecay']}), {HPARAMS['epochs']} epochs fixed in advance (no early stopping on the
validation split), batch {HPARAMS['batchSize']}, unweighted binary cross-entropy.

Gradient-boosted trees: scikit-learn `HistGradientBoostingClassifier` (learning rate
{TREES['learning_rate']}, {TREES['max_iter']} trees of at most {TREES['max_leaf_nodes']} leaves, at least
{TREES['min_samples_leaf']} rows per leaf, L2 {TREES['l2_regularization']}, no early stopping) on the
standardised inputs and the six utilisations as the graph computes them. The fitted trees are
written into the ONNX graph as tensor operations (`training/common/tabular.py`, `BoostedTrees`:
all splits evaluated at once and each tree's leaf found by a small matrix product, thresholds
rounded down to float32 so the graph
takes exactly scikit-learn's branches), so the file needs none of the ONNX-ML tree operators,
which onnxruntime runs on the CPU only.
"""),
    ]
    write_model_card(out, 'credit-default v1 (finance)', sections)


if __name__ == '__main__':
    main()
