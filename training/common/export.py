"""Shared export harness for the reference models (seeding, ONNX export, manifest, model card).

Typical use from a training script in ``training/<domain>/<script>.py``::

    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the training/ folder
    from common import (seed_everything, export_onnx, ort_parity, write_manifest,
                        write_model_card, feature_entry, REPO_ROOT)

    seed_everything(42)
    ...train a torch.nn.Module...
    export_onnx(model, {'features': x_val_tensor}, out_dir / 'model.onnx', ['probability'])
    ort_out = ort_parity(out_dir / 'model.onnx', {'features': x_val}, {'probability': torch_out})
    ...compute metrics from ort_out...
    write_manifest(out_dir, {...})          # fills schemaVersion, sha256, createdAt
    write_model_card(out_dir, 'Title', [('Section', 'markdown text'), ...])

Everything here is deterministic for a fixed seed on the CPU (one thread).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (``/work/main``)."""

DATASETS_DIR = (REPO_ROOT / '..' / 'shared' / 'datasets').resolve()
"""Default dataset folder, ``../shared/datasets`` beside the repository. Never copy data into the repo."""

OPSET = 17
MAX_MODEL_BYTES = 10 * 1024 * 1024

MANIFEST_KEYS = {
    'schemaVersion', 'name', 'version', 'domain', 'task', 'description', 'default', 'createdAt',
    'inputs', 'outputs', 'preprocessing', 'postprocessing', 'labels', 'thresholds', 'provenance',
    'metrics', 'batching', 'sha256',
}
"""Allowed top-level keys of model.json (the runtime schema is strict)."""

REQUIRED_KEYS = {'schemaVersion', 'name', 'version', 'domain', 'task', 'inputs', 'outputs', 'provenance',
                 'sha256'}

_ONNX_DTYPES = {1: 'float32', 11: 'float64', 3: 'int8', 2: 'uint8', 6: 'int32', 7: 'int64', 9: 'bool'}


def seed_everything(seed: int = 42, threads: int = 1) -> None:
    """Seed ``random``, numpy and torch, limit torch to ``threads`` CPU threads and turn on
    ``torch.use_deterministic_algorithms`` (warn-only where an op has no deterministic kernel)."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault('PYTHONHASHSEED', str(seed))
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
    except TypeError:  # older torch without warn_only
        torch.use_deterministic_algorithms(True)


def start_run(doc: str, data_default: os.PathLike, out_default: os.PathLike, seed: int = 42):
    """The command line every training script shares: ``[data] [--out DIR] [--seed N]``.

    Parses it, seeds everything, creates the output folder, and returns ``(args, out_dir, started_at)``.
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('data', nargs='?', default=str(data_default))
    ap.add_argument('--out', default=str(out_default))
    ap.add_argument('--seed', type=int, default=seed)
    args = ap.parse_args()
    started = time.time()
    seed_everything(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, out, started


def sha256_file(path: os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(model, example_inputs: Mapping[str, Any], path: os.PathLike, output_names: Sequence[str],
                dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None) -> Path:
    """Export ``model`` (a torch.nn.Module taking the inputs positionally, in the order of
    ``example_inputs``) to ``path`` with opset 17, named inputs/outputs and a dynamic batch axis
    (axis 0 of every input and output unless ``dynamic_axes`` is given). The model is put in eval
    mode; the graph is checked with ``onnx.checker`` and must be under 10 MB. Returns the path."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(example_inputs.keys())
    args = tuple(torch.as_tensor(np.asarray(v), dtype=torch.float32) if not torch.is_tensor(v) else v
                 for v in example_inputs.values())
    if dynamic_axes is None:
        dynamic_axes = {n: {0: 'batch'} for n in list(names) + list(output_names)}
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=names, output_names=list(output_names),
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True,
                          export_params=True)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    size = path.stat().st_size
    if size >= MAX_MODEL_BYTES:
        raise ValueError(f'{path} is {size} bytes, over the 10 MB limit')
    return path


def graph_signature(path: os.PathLike) -> Tuple[List[dict], List[dict]]:
    """Inputs and outputs of an ONNX graph as manifest tensor specs ``{name, dtype, shape}``,
    with -1 for dynamic (symbolic or unknown) dimensions."""
    import onnx

    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}

    def spec(v):
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField('dim_value') else -1 for d in t.shape.dim]
        return {'name': v.name, 'dtype': _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), 'shape': shape}

    return ([spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output])


def _plain(obj):
    """Convert numpy scalars/arrays and Paths into JSON-serialisable plain Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if not np.isfinite(v):
            raise ValueError('non-finite number in manifest')
        return v
    if isinstance(obj, Path):
        return str(obj)
    return obj


def rounded(obj, digits: int = 6):
    """Round every float in a nested structure to ``digits`` significant digits (for readable
    manifests and cards). Do not use on mean/scale values that must reproduce exactly."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(f'{float(obj):.{digits}g}')
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_manifest(model_dir: os.PathLike, manifest: Mapping[str, Any]) -> dict:
    """Write ``<model_dir>/model.json``.

    Fills ``schemaVersion: 1``, ``sha256`` (of ``<model_dir>/model.onnx``) and ``createdAt`` (UTC
    ISO 8601; ``$SOURCE_DATE_EPOCH`` is honoured for reproducible builds). If ``inputs``/``outputs``
    are missing they are taken from the graph; if given they must match it (names, dtypes, ranks,
    fixed sizes) as the runtime requires. Refuses unknown top-level keys. Writes sorted keys,
    2-space indent, trailing newline. Returns the written dict."""
    model_dir = Path(model_dir)
    onnx_path = model_dir / 'model.onnx'
    data = dict(_plain(dict(manifest)))
    unknown = set(data) - MANIFEST_KEYS
    if unknown:
        raise ValueError(f'unknown manifest keys: {sorted(unknown)}')
    g_in, g_out = graph_signature(onnx_path)
    for key, graph_specs in (('inputs', g_in), ('outputs', g_out)):
        if key not in data:
            data[key] = graph_specs
            continue
        given = data[key]
        if [s['name'] for s in given] != [s['name'] for s in graph_specs]:
            raise ValueError(f'{key} names {[s["name"] for s in given]} != graph {[s["name"] for s in graph_specs]}')
        for s, g in zip(given, graph_specs):
            if s['dtype'] != g['dtype'] or len(s['shape']) != len(g['shape']):
                raise ValueError(f'{key} {s["name"]}: {s} does not match graph {g}')
            for a, b in zip(s['shape'], g['shape']):
                if b != -1 and a != b:
                    raise ValueError(f'{key} {s["name"]}: shape {s["shape"]} does not match graph {g["shape"]}')
    epoch = os.environ.get('SOURCE_DATE_EPOCH')
    now = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch else _dt.datetime.now(_dt.timezone.utc)
    data['schemaVersion'] = 1
    data['sha256'] = sha256_file(onnx_path)
    data.setdefault('createdAt', now.replace(microsecond=0).isoformat().replace('+00:00', 'Z'))
    missing = REQUIRED_KEYS - set(data)
    if missing:
        raise ValueError(f'missing manifest keys: {sorted(missing)}')
    if 'dataset' not in data['provenance']:
        raise ValueError('provenance.dataset is required')
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + '\n'
    (model_dir / 'model.json').write_text(text, encoding='utf-8')
    return data


def feature_entry(name: str, source: str, transform: str, raw: Iterable[float], transformed: Iterable[float],
                  unit: str, description: str) -> dict:
    """One ``preprocessing.features`` entry of the standardize contract.

    ``raw`` are the training-split raw values (for ``min``/``max``/``baseline``=median) and
    ``transformed`` the same rows after ``transform`` (for ``mean``/``scale``, population std; a
    zero std becomes 1). The gateway computes ``(transform(raw) - mean) / scale``."""
    raw = np.asarray(raw, dtype=np.float64)
    tr = np.asarray(transformed, dtype=np.float64)
    scale = float(tr.std())
    return {
        'name': name, 'source': source, 'transform': transform,
        'mean': float(tr.mean()), 'scale': scale if scale > 1e-12 else 1.0,
        'unit': unit, 'min': float(raw.min()), 'max': float(raw.max()), 'baseline': float(np.median(raw)),
        'description': description,
    }


def hour_of_day(seconds: np.ndarray) -> np.ndarray:
    """Hour of day from seconds since the start of a capture."""
    return np.floor(seconds / 3600.0) % 24


def apply_transform(raw: np.ndarray, transform: str) -> np.ndarray:
    """The manifest's `preprocessing.features[].transform` vocabulary, applied before (x - mean) / scale.

    ``none``, ``log1p``, ``one_hot:<value>``, ``sin_hour`` / ``cos_hour`` (of seconds, via hour_of_day).
    The gateway's domain code implements the same list; keep the two in step.
    """
    if transform == 'none':
        return raw.astype(np.float64)
    if transform == 'log1p':
        return np.log1p(raw.astype(np.float64))
    if transform.startswith('one_hot:'):
        return (raw == float(transform.split(':', 1)[1])).astype(np.float64)
    if transform == 'sin_hour':
        return np.sin(2 * np.pi * hour_of_day(raw) / 24.0)
    if transform == 'cos_hour':
        return np.cos(2 * np.pi * hour_of_day(raw) / 24.0)
    raise ValueError(f'unknown transform {transform!r}')


def standardize(matrix: np.ndarray, features: Sequence[dict]) -> np.ndarray:
    """Apply ``(x - mean) / scale`` column-wise with the entries from :func:`feature_entry`
    (``matrix`` holds already-transformed values in the same column order). Returns float32."""
    mean = np.array([f['mean'] for f in features], dtype=np.float64)
    scale = np.array([f['scale'] for f in features], dtype=np.float64)
    return ((np.asarray(matrix, dtype=np.float64) - mean) / scale).astype(np.float32)


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are printed with 4 significant digits."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return f'{float(v):.4g}'
        return str(v).replace('|', '\\|')
    lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join('---' for _ in header) + ' |']
    lines += ['| ' + ' | '.join(cell(v) for v in r) + ' |' for r in rows]
    return '\n'.join(lines)


CARD_SECTIONS = ('Data source and licence', 'Intended use', 'Features', 'Validation metrics', 'Limitations',
                 'Fairness')


def write_model_card(model_dir: os.PathLike, title: str, sections: Sequence[Tuple[str, str]]) -> Path:
    """Write ``<model_dir>/MODEL_CARD.md`` from ``(heading, markdown)`` pairs. Every card must cover
    the headings in ``CARD_SECTIONS`` (data source and licence, intended use incl. out-of-scope use,
    features with unit and meaning, validation metrics with the split, limitations, fairness);
    a missing one raises ``ValueError``."""
    headings = [h for h, _ in sections]
    missing = [h for h in CARD_SECTIONS if h not in headings]
    if missing:
        raise ValueError(f'model card misses sections: {missing}')
    parts = [f'# {title}', '']
    for heading, body in sections:
        parts += [f'## {heading}', '', body.strip(), '']
    path = Path(model_dir) / 'MODEL_CARD.md'
    path.write_text('\n'.join(parts).rstrip() + '\n', encoding='utf-8')
    return path
