"""Inspect a ``torch.save`` archive before any torch deserializer sees it.

``torch.load(weights_only=True)`` of torch 2.3 hands a TorchScript archive to
``torch.jit.load``, which runs the archive's compiled code (a module's ``__setstate__``)
while loading (CVE-2025-32434). A neuroprune checkpoint is a plain ``torch.save`` zip
archive holding tensors, dicts, lists and numbers, so :func:`check_torch_archive`
accepts exactly that layout and nothing else:

- the bytes are a zip archive (a legacy pre-1.6 torch pickle is refused),
- every entry sits under one top folder and is one of ``data.pkl``, ``byteorder``,
  ``version``, ``.data/serialization_id``, ``.data/version``, ``data/<N>`` (and the
  ``.format_version`` / ``.storage_alignment`` records newer torch versions add)
  (TorchScript's ``code/``, ``constants.pkl``, ``extra/``, ``*.debug_pkl`` are refused),
- entries are stored uncompressed (as ``torch.save`` writes them) and no larger than the
  file, and torch's own zip reader lists the same entries,
- ``data.pkl`` uses only the pickle opcodes ``torch.save`` emits for such data, and its
  only globals are :data:`ALLOWED_GLOBALS` (``OrderedDict``, the tensor rebuild function
  and the storage types).
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
import zlib
from pathlib import Path

from neuroprune.errors import CheckpointError

__all__ = ["check_torch_archive", "ALLOWED_GLOBALS", "ALLOWED_OPCODES"]

_STORAGES = ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
ALLOWED_GLOBALS = frozenset(
    {"collections OrderedDict", "torch._utils _rebuild_tensor_v2"} | {f"torch {kind}Storage" for kind in _STORAGES}
)

# What torch.save (pickle protocol 2) writes for dicts, lists, tuples, strings, numbers
# and tensors. No INST/OBJ/NEWOBJ/BUILD/STACK_GLOBAL/EXT: objects come only from the
# allowed globals above.
ALLOWED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE",
    "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_LIST", "LIST", "APPEND", "APPENDS",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "GLOBAL", "REDUCE", "BINPERSID",
})

_ENTRY = re.compile(
    r"^(?:data\.pkl|byteorder|version|\.data/serialization_id|\.data/version|\.format_version|\.storage_alignment"
    r"|data/\d+)$"
)
_TORCHSCRIPT = re.compile(r"^(?:code/|constants\.pkl$|constants/|extra/|.*\.py$|.*debug_pkl$)")
# what Python's zipfile raises on a damaged archive
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error)
_FIX = "re-create it with neuroprune train / save_checkpoint, or load it only if you trust its author"


def _refuse(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path}: corrupt or not a torch checkpoint ({reason}); refused before loading; {_FIX}")


def check_torch_archive(path: Path, data: bytes) -> None:
    """Raise :class:`CheckpointError` unless ``data`` (the bytes of ``path``) is a plain
    ``torch.save`` archive of tensors and plain containers (see the module docstring)."""
    if not data.startswith(b"PK\x03\x04"):
        what = "a legacy torch pickle" if data[:1] == b"\x80" else "not a zip archive"
        raise _refuse(path, f"{what}; only torch's zip format is read")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise _refuse(path, f"broken zip archive: {str(exc)[:80]}") from None
    names = [info.filename for info in infos]
    if not names:
        raise _refuse(path, "empty zip archive")
    if len(set(names)) != len(names):
        raise _refuse(path, "duplicate zip entries")
    top = names[0].split("/", 1)[0]
    pickle_name = f"{top}/data.pkl"
    for info in infos:
        folder, _, inner = info.filename.partition("/")
        if folder != top or not folder or folder in (".", ".."):
            raise _refuse(path, f"zip entry {info.filename!r} outside the archive folder {top!r}")
        if _TORCHSCRIPT.match(inner):
            raise CheckpointError(
                f"{path}: a TorchScript archive (it holds {info.filename!r}), not a neuroprune checkpoint; "
                "refused without loading it, because loading TorchScript runs the code inside; " + _FIX
            )
        if not _ENTRY.match(inner):
            raise _refuse(path, f"unexpected zip entry {info.filename!r}")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
            raise _refuse(path, f"zip entry {info.filename!r} is compressed or larger than the file")
    if pickle_name not in names:
        raise _refuse(path, f"no {pickle_name} in the zip archive")
    try:
        pickled = archive.read(pickle_name)
    except _ZIP_ERRORS as exc:
        raise _refuse(path, f"broken zip archive: {str(exc)[:80]}") from None
    _check_pickle(path, pickled)
    _check_torch_reads_the_same(path, data, {name.partition("/")[2] for name in names})


def _check_torch_reads_the_same(path: Path, data: bytes, entries: set[str]) -> None:
    """torch's own zip reader must see exactly the entries checked above (no parser
    differential between Python's zipfile and torch's miniz)."""
    import torch

    try:
        seen = set(torch._C.PyTorchFileReader(io.BytesIO(data)).get_all_records())
    except Exception as exc:  # torch raises RuntimeError on archives it cannot open
        raise _refuse(path, f"torch cannot read the zip archive: {str(exc).splitlines()[0][:80]}") from None
    if seen != entries:
        raise _refuse(path, "torch's zip reader sees other entries than Python's")


def _check_pickle(path: Path, pickled: bytes) -> None:
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            if opcode.name not in ALLOWED_OPCODES:
                raise _refuse(path, f"its pickle uses opcode {opcode.name}, which a checkpoint never needs")
            if opcode.name == "GLOBAL" and arg not in ALLOWED_GLOBALS:
                name = str(arg).replace(" ", ".")
                raise _refuse(path, f"its pickle calls {name[:80]}, which a checkpoint never needs")
    except CheckpointError:
        raise
    except Exception as exc:  # pickletools raises ValueError and friends on broken pickles
        raise _refuse(path, f"broken pickle: {str(exc)[:80]}") from None
