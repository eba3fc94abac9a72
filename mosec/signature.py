"""What a worker's ``forward`` annotations say about its input and output types.

The typed mixin decodes requests into the type of ``forward``'s data parameter, and the OpenAPI
document describes both types. When the stage batches, ``forward`` gets and returns lists, so a
``List[T]`` (or ``list[T]``) annotation stands for items of type ``T``.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any


def forward_types(worker: type[Any], batched: bool) -> tuple[Any, Any]:
    """The type of one request item and of one response item of ``worker.forward``.

    Args:
        worker: the worker class.
        batched: whether the stage batches (``max_batch_size > 1``); then a list annotation
            is unwrapped to its item type.

    Returns:
        ``(request_type, response_type)``; ``typing.Any`` where an annotation is missing.

    Raises:
        TypeError: when the annotations name types that cannot be resolved.
    """
    forward = worker.forward
    try:
        hints = typing.get_type_hints(forward)
    except Exception as err:  # NameError for an unknown name, and whatever evaluating raises
        raise TypeError(
            f"cannot resolve the annotations of {worker.__name__}.forward: {err}"
        ) from err
    params = list(inspect.signature(forward).parameters.values())
    # params[0] is ``self``: forward is looked up on the class, unbound.
    data = params[1].name if len(params) > 1 else None
    request = hints.get(data, Any) if data else Any
    response = hints.get("return", Any)
    if batched:
        request, response = _item_type(request), _item_type(response)
    return request, response


def _item_type(annotation: Any) -> Any:
    """``T`` for ``List[T]``/``list[T]`` (``Any`` for a bare list); anything else as it is."""
    if annotation is list or typing.get_origin(annotation) is list:
        args = typing.get_args(annotation)
        return args[0] if args else Any
    return annotation
