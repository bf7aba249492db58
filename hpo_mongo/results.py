"""The result rules: what an objective may return and how it is recorded (docs/compat.md).

- a number → ``{"loss": float(x), "status": "ok"}``;
- a dict with ``status`` in STATUS_STRINGS and, if ok, a ``loss`` castable to float; extra keys
  are kept and ``attachments`` ({name: bytes}) is split off to be stored separately;
- ``inf`` is a valid (worst) loss; NaN, ``-inf``, a non-numeric loss, an unknown status or any
  other return type → ``status: "fail"`` with a ``failure`` message saying why (the trial is DONE);
  an unusable loss is then stored as null (its repr is in ``failure``). A ``-inf`` loss would beat
  every other loss and make every later comparison meaningless.
"""
from __future__ import annotations

import math
import numbers
import traceback
from typing import Any

import numpy as np

from .trials.documents import STATUS_FAIL, STATUS_OK, STATUS_PRUNED, STATUS_STRINGS, sonify


def as_number(value: Any, what: str = "loss") -> tuple[float | None, str | None]:
    """``(float(value), None)`` for a real number (NaN and inf included: the caller decides),
    else ``(None, why)``; numpy scalars, size-1 arrays and objects with ``__float__`` count."""
    if isinstance(value, (bool, np.bool_)):
        return None, f"{what} must be a number, got a bool ({value!r})"
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if not isinstance(value, (numbers.Real, np.number)):
        try:  # e.g. torch/tf scalars expose __float__
            if hasattr(value, "__float__") and not isinstance(value, (str, bytes)):
                value = float(value)
            else:
                raise TypeError
        except (TypeError, ValueError):
            return None, f"{what} must be a number, got {type(value).__name__} ({value!r:.80})"
    try:
        return float(value), None
    except (TypeError, ValueError, OverflowError):  # e.g. a complex number
        return None, f"{what} must be a real number, got {type(value).__name__} ({value!r:.80})"


def _as_loss(value: Any) -> tuple[float | None, str | None]:
    loss, why = as_number(value)
    if loss is None:  # not a number: ``why`` says so
        return loss, why
    if math.isnan(loss):
        return None, "loss is NaN"
    if loss == -math.inf:
        return None, "loss is -inf"
    return loss, why


def normalize_result(raw: Any) -> tuple[dict, dict[str, bytes]]:
    """Apply the result rules: return ``(result document, attachments)``."""
    if isinstance(raw, dict):
        result = dict(raw)
        attachments = result.pop("attachments", None) or {}
        if not isinstance(attachments, dict):
            result["status"] = STATUS_FAIL
            result["failure"] = f"attachments must be a dict of name -> bytes, got {type(attachments).__name__}"
            attachments = {}
        status = result.get("status")
        if status not in STATUS_STRINGS:
            result["failure"] = (f"unknown status {status!r} (expected one of {list(STATUS_STRINGS)})"
                                 if "status" in result else "result dict has no 'status'")
            result["status"] = STATUS_FAIL
            if _as_loss(result.get("loss"))[1]:
                result.pop("loss", None)
        elif status == STATUS_OK:
            if "loss" not in result:
                result["status"], result["failure"] = STATUS_FAIL, "status is 'ok' but the result has no 'loss'"
            else:
                loss, why = _as_loss(result["loss"])
                if why:
                    result["status"], result["failure"], result["loss"] = STATUS_FAIL, why, None
                else:
                    result["loss"] = loss
        elif "loss" in result and result["loss"] is not None:
            loss, why = _as_loss(result["loss"])
            result["loss"] = loss if not why else None
        return sonify(result), {str(k): v for k, v in attachments.items()}
    loss, why = _as_loss(raw)
    if why:
        failure = "objective returned NaN" if why == "loss is NaN" else f"objective returned an invalid result: {why}"
        return {"status": STATUS_FAIL, "failure": failure, "loss": None}, {}
    return {"loss": loss, "status": STATUS_OK}, {}


def error_info(exc: BaseException) -> dict[str, str]:
    """``{type, message, traceback}`` of an exception raised by an objective."""
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}".replace("builtins.", ""),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def error_result(info: dict[str, str]) -> dict:
    """The ``result`` recorded with an ERROR trial: status fail and a one-line ``failure``.

    A ``Timeout`` message already says what happened; other errors read ``Type: message``.
    """
    failure = info["message"] if info.get("type") == "Timeout" else f"{info['type']}: {info['message']}"
    return {"status": STATUS_FAIL, "failure": failure}


def pruned_result(last_step: int | None, last_value: float | None) -> dict:
    """The ``result`` of a pruned trial: status "pruned", ``loss`` = its last reported value
    (None when it reported nothing or NaN) and ``pruned_step`` = that report's step."""
    loss = None if last_value is None or math.isnan(last_value) else float(last_value)
    return {"status": STATUS_PRUNED, "loss": loss,
            "pruned_step": None if last_step is None else int(last_step)}
