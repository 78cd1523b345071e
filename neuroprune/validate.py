"""Checks at the file boundaries: type, finiteness, range and size, before anything is
allocated or computed.

Every reader (netx, NIR, ONNX, npz and image folders, chip TOML) passes what it reads
through these functions. Each failure raises a :mod:`neuroprune.errors` exception whose
one-line message names the place (file, layer, key), the value found, the limit and
the fix, so the CLI prints it and exits 2.

Size limits are sanity limits far above any network a Loihi board holds (a Loihi 2 chip
has about a million neurons and 120 million synapses): they stop a file that declares a
billion neurons, or a weight tensor of terabytes, before numpy tries to allocate it.

This module imports numpy only (h5py on demand).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import numpy as np

from neuroprune.errors import FormatError, NeuropruneError

__all__ = [
    "open_h5",
    "MAX_LAYER_NEURONS",
    "MAX_TENSOR_ELEMENTS",
    "MAX_COMPRESSION_RATIO",
    "check_declared_size",
    "check_real_array",
    "check_finite_array",
    "check_int_range",
    "check_shape",
    "check_h5_numeric",
    "check_node_fields",
    "onnx_tensor",
    "check_h5_datasets",
    "naming",
    "check_input_file",
]

MAX_LAYER_NEURONS = 1 << 24  # 16.8M neurons in one layer: 16 Loihi 2 chips' worth
MAX_TENSOR_ELEMENTS = 1 << 28  # 268M values in one tensor (1 GiB as int32)
# deflate (HDF5's gzip filter) compresses at most about 1032:1; a dataset that claims to
# unpack to more than that times its stored bytes is a bomb or a dataset whose chunks were
# never written (HDF5 would hand back fill values for all of it)
MAX_COMPRESSION_RATIO = 1032


def _count(shape: Any) -> int:
    """Number of elements of ``shape``, exact (Python integers never overflow)."""
    return math.prod(int(s) for s in shape)


def check_declared_size(count: int, what: str, where: str, limit: int, fix: str) -> None:
    """Refuse ``count`` (elements, neurons, classes) above ``limit`` before allocating."""
    if count > limit:
        raise FormatError(f"{where}: {what} declares {count} values, more than the limit of {limit}; {fix}")


def check_real_array(values: Any, what: str, where: str) -> np.ndarray:
    """``values`` as a numpy array of real numbers (booleans, integers, floats).

    Strings, objects, complex numbers and compound records are refused.
    """
    array = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if array.dtype.kind not in "biuf":
        kind = "complex" if array.dtype.kind == "c" else "text" if array.dtype.kind in "SUO" else str(array.dtype)
        raise FormatError(
            f"{where}: {what} holds {kind} values (dtype {array.dtype}); expected real numbers — "
            "store it as an integer or float array"
        )
    return array


def check_finite_array(values: Any, what: str, where: str) -> np.ndarray:
    """``values`` as a real numpy array with no NaN or infinity."""
    array = check_real_array(values, what, where)
    if array.dtype.kind == "f" and array.size and not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].reshape(-1)[0]
        count = int(np.count_nonzero(~np.isfinite(array)))
        raise FormatError(
            f"{where}: {what} holds {count} non-finite value(s) (e.g. {bad}); every value must be a finite "
            "number — retrain or re-export the network"
        )
    return array


def check_int_range(values: Any, what: str, where: str, low: int, high: int, fix: str) -> np.ndarray:
    """Finite real ``values`` inside ``[low, high]`` (checked before any integer cast)."""
    array = check_finite_array(values, what, where)
    if array.size:
        smallest, largest = array.min(), array.max()
        if smallest < low or largest > high:
            value = smallest if smallest < low else largest
            shown = int(value) if float(value).is_integer() else float(value)
            raise FormatError(f"{where}: {what} = {shown} is outside [{low}, {high}]; {fix}")
    return array


def check_shape(values: Any, what: str, where: str, fix: str, limit: int = MAX_LAYER_NEURONS) -> tuple[int, ...]:
    """A declared shape: positive integers whose product stays within ``limit``."""
    flat = check_finite_array(np.asarray(values).reshape(-1), what, where)
    if flat.size and flat.min() < 1:
        raise FormatError(f"{where}: {what} {tuple(flat.tolist())} has a size below 1; sizes must be positive; {fix}")
    shape = tuple(int(s) for s in flat)
    check_declared_size(math.prod(shape), f"{what} {shape}", where, limit, fix)
    return shape


def check_h5_numeric(group: Any, where: str, text_ok: tuple[str, ...] = ()) -> None:
    """The datasets directly in an HDF5 group hold real numbers (by dtype, nothing is
    read); names in ``text_ok`` may hold text."""
    import h5py

    for name, item in group.items():
        if isinstance(item, h5py.Dataset) and name not in text_ok:
            check_real_array(np.empty(0, dtype=item.dtype), name, where)


def check_node_fields(node: Any, where: str, *, infinite_ok: tuple[str, ...] = (),
                      text_ok: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    """Every parameter of a graph node (a dataclass such as a NIR node): real numbers,
    no NaN, no infinity except ``+inf`` in the fields named by ``infinite_ok`` (an
    infinite time constant means no decay); strings only in ``text_ok``."""
    for name, value in vars(node).items():
        if name in skip or value is None or (name in text_ok and isinstance(value, str)):
            continue
        array = check_real_array(value, name, where)
        if array.dtype.kind != "f" or not array.size:
            continue
        finite = np.isfinite(array) | ((array == np.inf) if name in infinite_ok else False)
        if not np.all(finite):
            check_finite_array(array[~finite], name, where)


def onnx_tensor(tensor: Any, where: str) -> np.ndarray:
    """An ONNX ``TensorProto`` as a finite real numpy array, its declared dims checked
    against the sanity limit and the data it really holds before numpy builds it."""
    from onnx import TensorProto, numpy_helper

    what = f"tensor {tensor.name!r}"
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise FormatError(f"{where}: {what} declares negative dims {dims}; the model is damaged")
    check_declared_size(math.prod(dims), f"{what} of shape {tuple(dims)}", where, MAX_TENSOR_ELEMENTS,
                        "the model is damaged or far too large for a neuromorphic chip")
    if tensor.data_type in (TensorProto.UNDEFINED, TensorProto.STRING, TensorProto.COMPLEX64,
                            TensorProto.COMPLEX128):
        name = TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in TensorProto.DataType.values() \
            else str(tensor.data_type)
        raise FormatError(f"{where}: {what} has element type {name}; expected real numbers (float or integer)")
    try:
        array = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, OverflowError) as err:
        raise FormatError(
            f"{where}: {what} of shape {tuple(dims)} does not match the data it holds "
            f"({str(err).splitlines()[0][:100]}); the model is damaged"
        ) from None
    return check_finite_array(array, what, where)


# ----------------------------------------------------------------------------- HDF5
def _stored_bytes(dataset: Any) -> int:
    try:
        return int(dataset.id.get_storage_size())
    except Exception:  # some layouts (external, virtual) cannot say
        return 0


def _check_dataset(dataset: Any, where: str) -> None:
    name = dataset.name
    try:
        shape = dataset.shape
        dtype = dataset.dtype
    except Exception as err:  # unknown datatype or broken header
        raise FormatError(f"{where}: dataset {name} cannot be read ({type(err).__name__}); the file is damaged") from None
    if shape is None:  # empty dataspace (h5py.Empty)
        return
    count = _count(shape)
    check_declared_size(count, f"dataset {name} of shape {tuple(shape)}", where, MAX_TENSOR_ELEMENTS,
                        "the file is damaged or far too large for a neuromorphic chip")
    declared = count * max(int(dtype.itemsize), 1)
    if declared == 0 or dtype.kind == "O":  # variable-length strings keep their bytes on the heap
        return
    stored = _stored_bytes(dataset)
    try:
        filtered = dataset.id.get_create_plist().get_nfilters() > 0
    except Exception:
        filtered = False
    limit = stored * (MAX_COMPRESSION_RATIO if filtered else 1)
    if declared > limit:
        raise FormatError(
            f"{where}: dataset {name} declares shape {tuple(shape)} ({declared} bytes) but the file holds "
            f"{stored} bytes of it (limit {limit}); the file is damaged or truncated — write it again"
        )


def _global_heap_objects(data: Any, size_bytes: int, where: str) -> dict[tuple[int, int], int]:
    """Walk every global heap collection (where HDF5 keeps variable-length data) the way
    the HDF5 library does; return ``(collection address, object index) -> size``.

    Refuses a collection whose object sizes would not advance the walk or run past the
    collection: libhdf5 loops forever on such a heap. Layout (HDF5 file format spec,
    "Global Heap"): ``GCOL``, version 1, 3 reserved bytes, the collection size; then
    objects of index (2 bytes), reference count (2), reserved (4), size, and the data
    padded to 8 bytes; index 0 is the free space.
    """
    header = 8 + size_bytes
    objects: dict[tuple[int, int], int] = {}
    at = data.find(b"GCOL\x01")
    while at >= 0:
        size = int.from_bytes(data[at + 8:at + header], "little")
        end = at + size
        position = at + header
        if size < header or end > len(data):
            raise FormatError(f"{where}: global heap at byte {at} declares {size} bytes, past the end of "
                              "the file; the file is damaged — write it again")
        while position + header <= end:
            index = int.from_bytes(data[position:position + 2], "little")
            length = int.from_bytes(data[position + 8:position + header], "little")
            need = header + (length + 7) // 8 * 8 if index else length
            if need < header or position + need > end:
                raise FormatError(
                    f"{where}: global heap object {index} at byte {position} has size {length}, which does "
                    "not fit its collection; the file is damaged — write it again"
                )
            objects[(at, index)] = length
            position += need
        at = data.find(b"GCOL\x01", at + 4)
    return objects


def _check_variable_length(handle: Any, datasets: list[Any], where: str) -> None:
    """Every variable-length element (length, heap address, object index) must name a
    heap object that holds it, before libhdf5 allocates ``length`` items for it."""
    import mmap

    import h5py

    address_bytes, size_bytes = (int(n) for n in handle.id.get_create_plist().get_sizes())
    entry = 4 + address_bytes + 4
    with open(handle.filename, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        objects = _global_heap_objects(data, size_bytes, where)
        for dataset in datasets:
            offset = dataset.id.get_offset()
            if offset is None:
                raise FormatError(f"{where}: dataset {dataset.name} keeps variable-length data in a chunked or "
                                  "compact layout, which is not supported; write it contiguous (h5py's default)")
            base = h5py.check_vlen_dtype(dataset.dtype)
            item = base.itemsize if isinstance(base, np.dtype) and base.kind not in "SUO" else 1  # str: bytes
            count = math.prod(dataset.shape)
            raw = data[offset:offset + count * entry]
            if len(raw) < count * entry:
                raise FormatError(f"{where}: dataset {dataset.name} runs past the end of the file; write it again")
            for start in range(0, len(raw), entry):
                length = int.from_bytes(raw[start:start + 4], "little")
                heap = int.from_bytes(raw[start + 4:start + 4 + address_bytes], "little")
                index = int.from_bytes(raw[start + 4 + address_bytes:start + entry], "little")
                held = objects.get((heap, index))
                if length and (held is None or length * item > held):
                    raise FormatError(
                        f"{where}: dataset {dataset.name} has a variable-length value of {length} items, but its "
                        f"global heap object holds {held or 0} bytes; the file is damaged — write it again"
                    )


def check_h5_datasets(handle: Any, where: str) -> None:
    """Check every dataset of an open HDF5 file: declared size against the sanity limit
    and against the bytes the file really stores for it; and the variable-length values
    (strings) against the global heaps they live in."""
    import h5py

    variable: list[Any] = []

    def visit(_name: str, item: Any) -> NeuropruneError | None:
        if isinstance(item, h5py.Dataset):
            try:
                _check_dataset(item, where)
            except NeuropruneError as err:
                return err  # a value other than None ends the visit
            if item.dtype.kind == "O" and h5py.check_ref_dtype(item.dtype) is None and item.shape is not None:
                variable.append(item)
        return None

    problem = handle.visititems(visit)
    if problem is not None:
        raise problem
    if variable:
        _check_variable_length(handle, variable, where)


@contextlib.contextmanager
def naming(path: Any) -> Iterator[None]:
    """Prefix errors raised inside with the file's name (when they do not name it), and
    turn the errors of a damaged HDF5 file into one :class:`FormatError`."""
    text = str(path)
    try:
        yield
    except NeuropruneError as err:
        if text in str(err):
            raise
        try:
            named = type(err)(f"{text}: {err}")
        except TypeError:  # an error class with other constructor arguments: keep it as it is
            raise err from None
        raise named from None
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError,
            OverflowError, MemoryError) as err:
        detail = str(err).splitlines()[0][:160] if str(err) else ""
        raise FormatError(f"{text}: damaged file ({type(err).__name__}: {detail}); "
                          "write it again or check where it came from") from None


def check_input_file(path: Any, expected: str) -> Any:
    """``path`` as a ``pathlib.Path`` when it names an existing file; else a
    :class:`FormatError` saying it is missing or a folder (``expected`` names the file kind)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.is_dir():
        raise FormatError(f"{path}: is a folder, expected {expected}")
    return path


def open_h5(path: Any, hint: str) -> Any:
    """``h5py.File(path, "r")``, or a :class:`FormatError` naming the file when libhdf5
    cannot open it (``hint`` says what the file should be)."""
    import h5py

    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as err:
        raise FormatError(
            f"{path}: not a readable HDF5 file ({str(err).split('(')[0].strip().rstrip(':,')}); {hint}"
        ) from None
