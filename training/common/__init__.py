"""Shared training harness: see :mod:`common.export` and :mod:`common.parity`.

Import from a script under ``training/<domain>/`` after putting ``training/`` on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from common import seed_everything, export_onnx, ort_parity, write_manifest, write_model_card
"""
from .export import (CARD_SECTIONS, apply_transform, hour_of_day, DATASETS_DIR, MANIFEST_KEYS, OPSET, REPO_ROOT, export_onnx, feature_entry,
                     graph_signature, md_table, rounded, seed_everything, sha256_file, standardize,
                     start_run, write_manifest, write_model_card)
from .parity import last_max_abs_diff, ort_parity

__all__ = [
    'CARD_SECTIONS', 'apply_transform', 'hour_of_day', 'DATASETS_DIR', 'MANIFEST_KEYS', 'OPSET', 'REPO_ROOT', 'export_onnx', 'feature_entry',
    'graph_signature', 'md_table', 'rounded', 'seed_everything', 'sha256_file', 'standardize', 'start_run',
    'write_manifest',
    'write_model_card', 'ort_parity', 'last_max_abs_diff',
]
from .metrics import (best_f1_threshold, binary_summary, bootstrap_auc_diff, threshold_for_precision,  # noqa: E402
                      threshold_for_recall, threshold_stats)

__all__ += ['best_f1_threshold', 'binary_summary', 'bootstrap_auc_diff', 'threshold_for_precision',
            'threshold_for_recall', 'threshold_stats']
