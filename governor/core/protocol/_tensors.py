"""Tensors <-> buffer frames, without copying.

Encoding hands out a byte view of each C-contiguous array (non-contiguous arrays are made contiguous
first, which is the only copy); decoding wraps each frame with ``np.frombuffer``, so the arrays share
memory with the received frames and are read-only when the frames are. Every length, dtype and shape
is checked against its :class:`TensorSpec` before a buffer is wrapped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import ValidationError

from governor.core.protocol._errors import ProtocolError
from governor.core.protocol._messages import DTYPES, TensorSpec

__all__ = ["MAX_TENSORS", "arrays_from_buffers", "buffers_from_arrays"]

MAX_TENSORS = 64


def buffers_from_arrays(tensors: Mapping[str, object]) -> tuple[tuple[TensorSpec, ...], list[memoryview]]:
    """Specs and zero-copy byte views for named arrays (anything ``np.asarray`` accepts)."""
    if len(tensors) > MAX_TENSORS:
        raise ProtocolError("bad_request", f"{len(tensors)} tensors exceed the limit of {MAX_TENSORS}")
    specs: list[TensorSpec] = []
    buffers: list[memoryview] = []
    for name, value in tensors.items():
        array = np.asarray(value)
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        if array.dtype.str not in DTYPES:
            raise ProtocolError(
                "bad_request",
                f"tensor {name!r} has dtype {array.dtype} ({array.dtype.str!r}), which the protocol does not "
                f"carry: convert it, e.g. arr.astype('<f4'); supported dtypes: {', '.join(DTYPES)}",
            )
        specs.append(_spec(name, array))
        buffers.append(array.data.cast("B") if array.size else memoryview(b""))
    return tuple(specs), buffers


def _spec(name: str, array: np.ndarray) -> TensorSpec:
    try:
        return TensorSpec(name=name, dtype=array.dtype.str, shape=array.shape, nbytes=array.nbytes)
    except ValidationError as exc:
        raise ProtocolError("bad_request", f"tensor {name!r}: {exc.errors()[0]['msg']}") from None


def arrays_from_buffers(specs: Sequence[TensorSpec], buffers: Sequence[memoryview]) -> dict[str, np.ndarray]:
    """Wrap each buffer as the array its spec describes; every mismatch is a ``bad_request``."""
    if len(specs) != len(buffers):
        raise ProtocolError(
            "bad_request",
            f"header lists {len(specs)} tensors but {len(buffers)} buffer frames follow it: "
            "send exactly one frame per entry of 'tensors', in order",
        )
    arrays: dict[str, np.ndarray] = {}
    for spec, buffer in zip(specs, buffers, strict=True):
        if spec.name in arrays:
            raise ProtocolError("bad_request", f"tensor name {spec.name!r} appears twice: names must be unique")
        arrays[spec.name] = _wrap(spec, buffer)
    return arrays


def _wrap(spec: TensorSpec, buffer: memoryview) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    expected = math.prod(spec.shape) * dtype.itemsize
    if spec.nbytes != expected:
        raise ProtocolError(
            "bad_request",
            f"tensor {spec.name!r}: nbytes {spec.nbytes} does not match shape {list(spec.shape)} of "
            f"{spec.dtype} ({expected} bytes)",
        )
    if buffer.nbytes != spec.nbytes:
        raise ProtocolError(
            "bad_request",
            f"tensor {spec.name!r}: its frame has {buffer.nbytes} bytes but the header says {spec.nbytes}",
        )
    try:
        return np.frombuffer(buffer, dtype=dtype).reshape(spec.shape)
    except ValueError:  # numpy refuses shapes whose non-zero dimensions overflow, even at 0 bytes
        raise ProtocolError(
            "bad_request", f"tensor {spec.name!r}: shape {list(spec.shape)} has more elements than an array can hold"
        ) from None
