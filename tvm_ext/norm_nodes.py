"""Norm nodes: an instance or group norm call and the residual add and ReLU after it, found in
a Relax function for :class:`tvm_ext.passes.ChainConvLayouts`, and the constant arguments of
the chained kernel that replaces them (:mod:`tvm_ext.te.chained_norm`).

A node is ``norm(x, gamma, beta)`` over the spatial axes of an NCHW map (channel axis 1,
constant gamma and beta), then optionally ``add(norm, r)`` (either operand order, ``r``
the same shape) and ``relu``, each intermediate value used only by the next one. The node's
value is its last binding's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tvm_ext._compat import IRConstant, relax
from tvm_ext.relax_match import is_op, lookup, lookup_set, static_shape


@dataclass(frozen=True)
class NormNode:
    """One norm node: the norm's input, its parameters, and the bindings it spans."""

    #: the norm call's input (a var) and its logical NCHW shape
    data: Any
    shape: tuple[int, int, int, int]
    gamma: np.ndarray
    beta: np.ndarray
    epsilon: float
    #: channels per group: 1 for an instance norm
    group_size: int
    #: the vars bound, in order: the norm call, then the add and relu that are fused
    bound: tuple[Any, ...]
    #: the residual added (a var), if any
    residual: Any = None
    relu: bool = False
    #: the ReLU comes before the residual add (``x + relu(norm(conv(x)))``)
    relu_first: bool = False

    @property
    def out(self) -> Any:
        """The var holding the node's value."""
        return self.bound[-1]

    @property
    def add(self) -> Any:
        """The var of the fused residual add (None without one)."""
        if self.residual is None:
            return None
        return self.bound[2] if self.relu_first else self.bound[1]

    @property
    def fused(self) -> tuple[str, ...]:
        norm = "instance_norm" if self.group_size == 1 else "group_norm"
        after = ["add"] * (self.residual is not None)
        if self.relu:
            after.insert(0 if self.relu_first else len(after), "relu")
        return (norm, *after)

    def kernel_arrays(self, positions: np.ndarray, slots: int) -> list[np.ndarray]:
        """``gamma, beta[, members]`` over ``slots`` positions, channel ``c`` at
        ``positions[c]`` (positions no channel maps to: zeros, and a group of themselves)."""
        gamma = np.zeros(slots, np.float32)
        beta = np.zeros(slots, np.float32)
        gamma[positions] = self.gamma
        beta[positions] = self.beta
        out: list[np.ndarray] = [gamma, beta]
        if self.group_size > 1:
            members = np.repeat(np.arange(slots, dtype=np.int32)[:, None], self.group_size, 1)
            groups = positions.reshape(-1, self.group_size)
            members[positions] = np.repeat(groups, self.group_size, axis=0)
            out.append(members)
        return out


def _param(expr: Any, channels: int) -> np.ndarray | None:
    """A constant per-channel gamma / beta; None for anything else (a value known only at
    run time cannot be permuted at compile time: the norm is left to TVM)."""
    if not isinstance(expr, IRConstant):
        return None
    value = expr.value.numpy().astype(np.float32)
    return value if value.shape == (channels,) else None


def _norm_call(value: Any) -> tuple[int, float, bool, bool] | None:
    """``(groups, epsilon, center, scale)`` of a norm over the spatial axes of an NCHW map
    (groups 0: an instance norm), else None."""
    if is_op(value, "relax.nn.instance_norm"):
        groups = 0
    elif is_op(value, "relax.nn.group_norm"):
        groups = int(value.attrs.num_groups)
    else:
        return None
    a = value.attrs
    shape = static_shape(value.args[0])
    if shape is None or len(shape) != 4 or int(a.channel_axis) != 1:
        return None
    axes = tuple(int(v) for v in a.axes)
    # (0, 2, 3) is what the torch frontend writes for an instance norm: the same for one map
    if axes != (2, 3) and not (axes == (0, 2, 3) and shape[0] == 1 and groups == 0):
        return None
    return groups, float(a.epsilon), bool(a.center), bool(a.scale)


def find_norm_node(
    var: Any, values: dict[Any, Any], users: dict[Any, list[Any]], outputs: set[Any]
) -> NormNode | None:
    """The node whose norm call is bound to ``var`` (``values``: var -> bound value;
    ``users``: var -> the vars whose values use it; ``outputs``: the function's outputs,
    which end a node), or None."""
    value = lookup(values, var)
    found = _norm_call(value) if value is not None else None
    if found is None or not isinstance(value.args[0], relax.Var):
        return None
    groups, epsilon, center, scale = found
    shape: tuple[int, int, int, int] = static_shape(value.args[0])  # type: ignore[assignment]
    c = shape[1]
    if groups and c % groups:
        return None
    gamma, beta = _param(value.args[1], c), _param(value.args[2], c)
    if gamma is None or beta is None:
        return None
    # without scale / center the op's gamma / beta should not apply, but TVM's legalisation
    # applies them: only the unambiguous case (ones / zeros) is chained
    if (not scale and (gamma != 1).any()) or (not center and beta.any()):
        return None
    bound, residual, relu, relu_first = [var], None, False, False

    def only_user(v: Any) -> tuple[Any, Any] | None:
        after = lookup(users, v) or []
        if len(after) != 1 or lookup_set(outputs, v):
            return None
        return after[0], lookup(values, after[0])

    for _ in range(2):  # a residual add and a ReLU, in either order
        last = bound[-1]
        nxt = only_user(last)
        if nxt is None:
            break
        if residual is None and is_op(nxt[1], "relax.add"):
            lhs, rhs = nxt[1].args
            other = rhs if lhs.same_as(last) else lhs
            if (
                not isinstance(other, relax.Var)
                or other.same_as(last)
                or static_shape(other) != shape
            ):
                break
            bound.append(nxt[0])
            residual, relu_first = other, relu
        elif not relu and is_op(nxt[1], "relax.nn.relu"):
            bound.append(nxt[0])
            relu = True
        else:
            break
    return NormNode(
        data=value.args[0],
        shape=shape,
        gamma=gamma,
        beta=beta,
        epsilon=epsilon,
        group_size=c // groups if groups else 1,
        bound=tuple(bound),
        residual=residual,
        relu=relu,
        relu_first=relu_first,
    )
