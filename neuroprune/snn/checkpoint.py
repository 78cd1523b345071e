"""Checkpoints: tensors plus plain-JSON metadata, written atomically, loaded safely.

File layout (one ``torch.save`` of a dict, loadable with ``weights_only=True``)::

    {"format": "neuroprune-checkpoint", "version": 1, "kind": "model",
     "state": {name: Tensor, ...}, "meta": "<JSON text>"}

The metadata travels as JSON text so that loading never unpickles arbitrary objects.
Before torch sees a file, :func:`~neuroprune.snn.torch_archive.check_torch_archive`
checks its zip layout and pickle (no TorchScript, only tensors and plain containers),
and torch then reads the bytes already checked, not the file again.
Writing goes to a temporary file in the same folder followed by ``os.replace``, so a
crash leaves either the old file or the new one, never a half-written file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from neuroprune.atomic import atomic_path
from neuroprune.errors import CheckpointError
from neuroprune.snn.torch_archive import check_torch_archive

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT", "VERSION"]

FORMAT = "neuroprune-checkpoint"
VERSION = 1


def _meta_json(path: Path, meta: Mapping[str, Any]) -> str:
    if not isinstance(meta, Mapping):
        raise CheckpointError(
            f"{path}: meta must be a dict of plain data, got {type(meta).__name__}"
        )
    try:
        return json.dumps(dict(meta), allow_nan=True, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: meta is not plain JSON data ({exc}); convert numpy values with "
            ".item() / .tolist() and objects to dicts of str, int, float, bool, list"
        ) from None


def save_checkpoint(
    path: str | os.PathLike[str],
    model_state: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    *,
    kind: str = "model",
) -> Path:
    """Write ``model_state`` (e.g. ``model.state_dict()``) and ``meta`` to ``path`` atomically.

    ``model_state`` maps names to tensors (nested dicts/lists of tensors and numbers,
    such as an optimizer ``state_dict()``, are allowed); tensors are stored on CPU.
    ``meta`` must be JSON-serialisable plain data. ``kind`` tags what the file holds
    (``"model"``, ``"search"``, ...) so :func:`load_checkpoint` can refuse the wrong one.
    Returns the path written.
    """
    path = Path(path)
    if not isinstance(model_state, Mapping):
        raise CheckpointError(
            f"{path}: model_state must be a dict such as model.state_dict(), "
            f"got {type(model_state).__name__}"
        )
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": str(kind),
        "state": _to_cpu(dict(model_state)),
        "meta": _meta_json(path, meta or {}),
    }
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CheckpointError(
            f"{path}: folder {folder} does not exist; create it first (mkdir -p {folder})"
        )
    with atomic_path(path) as tmp_name, open(tmp_name, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def load_checkpoint(
    path: str | os.PathLike[str], *, kind: str | None = "model"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`; return ``(state, meta)``.

    Tensors are mapped to CPU. With ``kind`` given (default ``"model"``) a checkpoint
    of another kind is refused; pass ``kind=None`` to accept any kind.
    Raises :class:`CheckpointError` for a missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint file; check the path or train one first "
            "(neuroprune train --out FILE)"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror}); check its permissions") from None
    check_torch_archive(path, data)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, unpickling and EOF errors all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: corrupt or not a torch checkpoint ({reason[:120]}); "
            "re-create it with save_checkpoint / neuroprune train"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = (
            "a plain state_dict"
            if isinstance(payload, dict) and all(isinstance(k, str) for k in payload)
            else f"a {type(payload).__name__}"
        )
        raise CheckpointError(
            f"{path}: not a neuroprune checkpoint (it holds {what}); save it with "
            "neuroprune.snn.checkpoint.save_checkpoint(path, model.state_dict(), meta)"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')!r} is not supported "
            f"(this neuroprune reads version {VERSION}); re-create it"
        )
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(
            f"{path}: holds a {payload.get('kind')!r} checkpoint, expected {kind!r}; "
            "pass the right file"
        )
    state, meta_text = payload.get("state"), payload.get("meta")
    if not isinstance(state, dict) or not isinstance(meta_text, str):
        raise CheckpointError(f"{path}: checkpoint is incomplete (state or meta missing); re-create it")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint meta is not valid JSON ({exc}); re-create it") from None
    return state, meta
