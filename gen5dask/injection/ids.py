"""The sample-id codec of ``train.zarr``: ``id = host_id * 64 + code``.

``code`` is 0 for the control, 1 for the null injection and ``2 + 2 * replicate +
(mode == calibrated)`` for injections (replicates <= 31, host ids in ``[0, 2**57)``). Rows are
ordered by id, so the output does not depend on task order, worker count or chunking.
"""

from __future__ import annotations

import numpy as np

from gen5dask.injection.laws import MODE_CODES

#: ids per host: ``id = host_id * ID_STRIDE + code``.
ID_STRIDE = 64
CODE_CONTROL = 0
CODE_NULL = 1
#: roles of an output row.
ROLE_CONTROL, ROLE_NULL, ROLE_INJECTION = 0, 1, 2
#: largest host id the codec accepts (exclusive).
MAX_HOST_ID = 2**57
#: the formula, as recorded in the store attributes.
ID_FORMULA = "host_id * 64 + code (0 control, 1 null, 2 + 2 rep + calibrated)"


def sample_id(host_id, role, *, mode=0, replicate=0) -> np.ndarray:
    """Output sample id(s) of a host, role, brightness-mode code and replicate."""
    host_id = np.asarray(host_id, dtype=np.int64)
    role = np.asarray(role)
    code = np.where(
        role == ROLE_CONTROL,
        CODE_CONTROL,
        np.where(
            role == ROLE_NULL,
            CODE_NULL,
            2 + 2 * np.asarray(replicate, dtype=np.int64)
            + (np.asarray(mode) == MODE_CODES["calibrated"]),
        ),
    )
    return host_id * ID_STRIDE + code


def decode(sample) -> dict[str, np.ndarray]:
    """Inverse of :func:`sample_id`: ``host_id``, ``role``, ``mode`` (code; 0 for controls,
    ``MODE_CODES["null"]`` for null injections) and ``replicate`` (0 unless an injection)."""
    s = np.asarray(sample, dtype=np.int64)
    host, code = s // ID_STRIDE, s % ID_STRIDE
    role = np.where(code == CODE_CONTROL, ROLE_CONTROL,
                    np.where(code == CODE_NULL, ROLE_NULL, ROLE_INJECTION))
    inj = role == ROLE_INJECTION
    rep = np.where(inj, (code - 2) // 2, 0)
    mode = np.where(
        inj,
        np.where((code - 2) % 2 == 1, MODE_CODES["calibrated"], MODE_CODES["uncalibrated"]),
        np.where(role == ROLE_NULL, MODE_CODES["null"], 0),
    )
    return {"host_id": host, "role": role, "mode": mode, "replicate": rep}


__all__ = [
    "CODE_CONTROL",
    "CODE_NULL",
    "ID_FORMULA",
    "ID_STRIDE",
    "MAX_HOST_ID",
    "ROLE_CONTROL",
    "ROLE_INJECTION",
    "ROLE_NULL",
    "decode",
    "sample_id",
]
