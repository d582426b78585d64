#!/usr/bin/python3
"""Train finance/credit-default v1: probability of default next month (UCI credit card clients).

Usage: python3 training/finance/credit_default.py [CSV] [--out DIR] [--seed 42]

SEX, MARRIAGE and AGE are protected attributes and are NOT model inputs. The same model is also
trained WITH them, only to measure (and report) the AUC cost of leaving them out; that variant is
not exported. Metrics in the manifest and card are recomputed from the ONNX outputs
(onnxruntime-node) on a fixed, seeded, stratified 80/20 split.
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (start_run, apply_transform, DATASETS_DIR, REPO_ROOT, best_f1_threshold, binary_summary, bootstrap_auc_diff,  # noqa: E402
                    export_onnx, feature_entry, last_max_abs_diff, md_table, ort_parity, rounded,
                    standardize, threshold_for_precision, threshold_stats, write_manifest,
                    write_model_card)
from common.tabular import fit_members, MLP, SigmoidEnsemble, predict  # noqa: E402
from torch import nn  # noqa: E402

PROTECTED = ['SEX', 'MARRIAGE', 'AGE']
PAY = ['PAY_0', 'PAY_2', 'PAY_3', 'PAY_4', 'PAY_5', 'PAY_6']
MONTHS = {'0': 'September', '2': 'August', '3': 'July', '4': 'June', '5': 'May', '6': 'April'}
BILL_MONTH = {1: 'September', 2: 'August', 3: 'July', 4: 'June', 5: 'May', 6: 'April'}
GRADES = [('A', 0.0, 0.10), ('B', 0.10, 0.20), ('C', 0.20, 0.35), ('D', 0.35, 0.60), ('E', 0.60, 1.0)]
ENSEMBLE = 5
HPARAMS = {'hidden': [64, 64], 'dropout': 0.3, 'epochs': 30, 'lr': 1e-3, 'weightDecay': 1e-3, 'batchSize': 256,
           'ensembleMembers': ENSEMBLE,
           'derivedFeatures': ['signed log of each BILL_AMTi: sign(b)*ln(1+|b|)',
                               'utilisation BILL_AMTi / LIMIT_BAL clipped to [-0.5, 1.5]']}
UTIL_CLIP = (-0.5, 1.5)


def _slog(v):
    return np.sign(v) * np.log1p(np.abs(v))


def derived_raw(limit, bills):
    """[N, 12] derived features (numpy): signed-log bills, then utilisation bill / limit."""
    return np.concatenate([_slog(bills), np.clip(bills / limit[:, None], *UTIL_CLIP)], 1)


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
        raw = x * self.scale + self.mean
        limit = torch.exp(raw[:, self.i_limit:self.i_limit + 1]) - 1.0  # expm1 has no ONNX export
        bills = raw[:, self.i_bills]
        slog = torch.sign(bills) * torch.log1p(torch.abs(bills))
        util = torch.clamp(bills / limit, UTIL_CLIP[0], UTIL_CLIP[1])
        d = (torch.cat([slog, util], 1) - self.d_mean) / self.d_scale
        return self.mlp(torch.cat([x, d], 1))


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

    x, feats, arch = build(df, tr, with_protected=False)
    model = train_ensemble(x[tr], y[tr], args.seed, arch)
    xp, feats_p, arch_p = build(df, tr, with_protected=True)
    model_p = train_ensemble(xp[tr], y[tr], args.seed, arch_p)
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
                     'description': 'probability of default next month (mean of a 5-member MLP ensemble)'}],
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
neural networks. On this split a gradient-boosting baseline (scikit-learn HistGradientBoosting,
same columns) reached about 0.778, so the split is at the lower end of that range.

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
- A 5-member MLP ensemble; attributions should use occlusion against the `baseline` medians.
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
{m['trainingSeconds']:.0f} s). Architecture: mean of {HPARAMS['ensembleMembers']} networks; each
un-standardises its inputs in the graph, adds 12 derived features (signed log of the six bill
amounts and utilisation = bill / credit limit clipped to [-0.5, 1.5], standardised with training
statistics) and feeds them with the inputs to an MLP ({HPARAMS['hidden']}, ReLU, dropout {HPARAMS['dropout']}), AdamW (lr {HPARAMS['lr']}, weight decay
{HPARAMS['weightDecay']}), {HPARAMS['epochs']} epochs fixed in advance (no early stopping on the
validation split), batch {HPARAMS['batchSize']}, unweighted binary cross-entropy.
"""),
    ]
    write_model_card(out, 'credit-default v1 (finance)', sections)


if __name__ == '__main__':
    main()
