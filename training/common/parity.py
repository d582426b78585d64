"""Parity check between PyTorch and onnxruntime-node (the runtime the gateway uses).

:func:`ort_parity` writes the inputs as float32 little-endian files plus a JSON sidecar, runs
``node training/common/ort_parity.js <model> <inputDir> <outputDir>`` (CPU execution provider),
reads the outputs back, asserts ``max |ort - torch| <= atol`` (1e-4) for every output and returns
the ORT outputs, so that reported metrics can be recomputed from what the runtime will produce.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np

from .export import REPO_ROOT

SCRIPT = Path(__file__).resolve().parent / 'ort_parity.js'

last_max_abs_diff: Dict[str, float] = {}
"""Max abs difference per output name from the latest :func:`ort_parity` call."""


def _np(v: Any) -> np.ndarray:
    if hasattr(v, 'detach'):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float32)


def ort_parity(model_path: os.PathLike, inputs: Mapping[str, Any], torch_outputs: Mapping[str, Any],
               atol: float = 1e-4, node: str = 'node') -> Dict[str, np.ndarray]:
    """Run ``model_path`` in onnxruntime-node on ``inputs`` ({name: array}, cast to float32) and
    compare with ``torch_outputs`` ({output name: array or tensor}). Raises ``AssertionError`` when
    an output is missing, has another shape, or differs by more than ``atol``. Returns
    ``{output name: np.ndarray (float32)}`` from ORT; the differences are kept in
    ``parity.last_max_abs_diff``. Needs ``node`` on PATH and onnxruntime-node in the repo's
    node_modules (the script is run with the repository root as working directory)."""
    with tempfile.TemporaryDirectory(prefix='ort-parity-') as tmp:
        in_dir = Path(tmp) / 'in'
        out_dir = Path(tmp) / 'out'
        in_dir.mkdir()
        spec = []
        for name, value in inputs.items():
            arr = np.ascontiguousarray(_np(value), dtype='<f4')
            file = f'{len(spec)}.bin'
            arr.tofile(in_dir / file)
            spec.append({'name': name, 'shape': list(arr.shape), 'file': file})
        (in_dir / 'inputs.json').write_text(json.dumps({'inputs': spec}))
        proc = subprocess.run([node, str(SCRIPT), str(Path(model_path).resolve()), str(in_dir), str(out_dir)],
                              cwd=str(REPO_ROOT), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f'ort_parity.js failed ({proc.returncode}): {proc.stderr.strip()}')
        meta = json.loads((out_dir / 'outputs.json').read_text())
        outputs = {}
        for o in meta['outputs']:
            data = np.fromfile(out_dir / o['file'], dtype='<f4')
            outputs[o['name']] = data.reshape(o['shape'])
    last_max_abs_diff.clear()
    for name, expected in torch_outputs.items():
        if name not in outputs:
            raise AssertionError(f'ORT produced no output {name!r} (got {sorted(outputs)})')
        exp = _np(expected)
        got = outputs[name]
        if exp.shape != got.shape:
            raise AssertionError(f'{name}: ORT shape {got.shape} != torch shape {exp.shape}')
        diff = float(np.max(np.abs(got.astype(np.float64) - exp.astype(np.float64)))) if exp.size else 0.0
        last_max_abs_diff[name] = diff
        if not diff <= atol:
            raise AssertionError(f'{name}: max abs diff {diff:.3g} > {atol:g}')
    return outputs
