"""Winograd F(4 x 4, 3 x 3) convolutions for VGGish on the CPU (Lavin & Gray, 2016): each 6 x 6
input tile and each kernel transformed (``V = B^T d B``, ``U = G g G^T``), multiplied over channels
(36 matrix products) and transformed back (``Y = A^T M A``), 4x fewer multiplications than a direct
3x3 convolution. The transforms are built exactly in rational arithmetic (Toom-Cook at 0, +-1, +-1/2
and infinity), ``B^T`` and ``A^T`` with small integers and powers of two, every other constant
folded into ``G`` (float64, rounded once); point pairs +-p share their even and odd partial sums.
Activations are NHWC; eager mode computes a batch in cache-sized chunks, traced graphs keep a
dynamic batch axis; :data:`TORCH_TILES` / :data:`ONNX_TILES` say which layer runs which way."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

import torch
from torch.nn import functional as F

TILES = (4,)  # output tile sizes m of F(m x m, 3 x 3) built here

# The fastest algorithm per layer (benchmarks/bench_winograd.py): a tile size, or 0 for a direct
# convolution (conv3x3_relu_direct in PyTorch, ONNX's Conv in a graph).
TORCH_TILES: Mapping[str, int] = MappingProxyType(
    {"conv1": 0, "conv2": 4, "conv3_1": 4, "conv3_2": 4, "conv4_1": 4, "conv4_2": 4}
)
ONNX_TILES: Mapping[str, int] = MappingProxyType(
    {"conv1": 0, "conv2": 0, "conv3_1": 4, "conv3_2": 4, "conv4_1": 4, "conv4_2": 4}
)

KERNEL_SIZE = 3
# Eager mode computes a batch in chunks (see examples_per_chunk) whose intermediates stay in cache.
CHUNK_BYTES = 4 << 20  # Winograd products per chunk, at least
DIRECT_CHUNK_BYTES = 8 << 20  # direct convolution outputs per chunk, at least

# Interpolation points (besides infinity) of each tile size; m + 1 finite points for F(m, 3).
_POINTS: dict[int, tuple[Fraction, ...]] = {
    4: (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-1, 2)),
}

Matrix = tuple[tuple[Fraction, ...], ...]
# One row of a sparse linear map: (input index, coefficient) for each non-zero coefficient.
SparseRow = tuple[tuple[int, float], ...]
Stage = tuple[SparseRow, ...]


@dataclass(frozen=True)
class Transforms:
    """The exact matrices of F(m, 3) in one dimension (the 2-D algorithm applies them on both axes);
    ``input_stages`` / ``output_stages``: ``B^T`` / ``A^T`` as sparse stages applied in turn;
    ``ones``: the all-ones column of ``A^T`` (a constant added there reaches every output), or None."""

    m: int
    alpha: int
    g: Matrix
    bt: Matrix
    at: Matrix
    input_stages: tuple[Stage, ...]
    output_stages: tuple[Stage, ...]
    ones: int | None


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    cols = _transpose(b)
    return tuple(tuple(sum((x * y for x, y in zip(r, c, strict=True)), Fraction(0)) for c in cols) for r in a)


def _transpose(a: Matrix) -> Matrix:
    return tuple(zip(*a, strict=True))


def _inverse(a: Matrix) -> Matrix:
    """Exact Gauss-Jordan inverse."""
    n = len(a)
    rows = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                f = rows[r][col]
                rows[r] = [v - f * p for v, p in zip(rows[r], rows[col], strict=True)]
    return tuple(tuple(row[n:]) for row in rows)


def _evaluation(points: tuple[Fraction, ...], degree: int) -> Matrix:
    """Rows ``(p^0 ... p^(degree-1))`` per finite point, then infinity's row (the top coefficient)."""
    rows = [tuple(p**i for i in range(degree)) for p in points]
    rows.append(tuple(Fraction(int(i == degree - 1)) for i in range(degree)))
    return tuple(rows)


def _primitive(row: tuple[Fraction, ...]) -> Fraction:
    """The factor that makes ``row`` a primitive integer vector with more + than - entries."""
    lcm = math.lcm(*(v.denominator for v in row))
    scale = Fraction(lcm, math.gcd(*(v.numerator * lcm // v.denominator for v in row)))
    positive = sum(v > 0 for v in row) - sum(v < 0 for v in row)
    return scale if positive >= 0 else -scale


def _sparse(matrix: Matrix) -> Stage:
    """A dense exact matrix as sparse float rows, +-1 coefficients first (cheapest to start a sum)."""
    out = []
    for row in matrix:
        entries = [(j, float(v)) for j, v in enumerate(row) if v != 0]
        entries.sort(key=lambda e: (e[1] != 1, e[1] != -1))
        out.append(tuple(entries))
    return tuple(out)


def _pair_rows(matrix: Matrix, pairs: list[tuple[int, int]]) -> tuple[Matrix, Matrix]:
    """``matrix = Q P``: ``P`` holds the even and odd parts ``(row_i +- row_j) / 2`` of each point
    pair (p, -p) where that saves coefficients, ``Q`` adds or subtracts them."""
    parts: list[tuple[Fraction, ...]] = []
    picks: dict[int, dict[int, Fraction]] = {}  # row -> {its slot in P: coefficient}
    for i, j in pairs:
        even = tuple((a + b) / 2 for a, b in zip(matrix[i], matrix[j], strict=True))
        odd = tuple((a - b) / 2 for a, b in zip(matrix[i], matrix[j], strict=True))
        if sum(v != 0 for v in even + odd) < sum(v != 0 for v in matrix[i] + matrix[j]):
            parts += [even, odd]
            e, o = len(parts) - 2, len(parts) - 1
            picks[i] = {e: Fraction(1), o: Fraction(1)}
            picks[j] = {e: Fraction(1), o: Fraction(-1)}
    for i, row in enumerate(matrix):
        if i not in picks:
            parts.append(row)
            picks[i] = {len(parts) - 1: Fraction(1)}
    q = tuple(
        tuple(picks[i].get(slot, Fraction(0)) for slot in range(len(parts))) for i in range(len(matrix))
    )
    p = tuple(parts)
    if _matmul(q, p) != matrix:
        raise AssertionError("Winograd transform factorisation is not exact")
    return q, p


def _power_of_two(v: Fraction) -> bool:
    n, d = abs(v.numerator), v.denominator
    return v != 0 and n & (n - 1) == 0 and d & (d - 1) == 0


def _unit_scale(row: tuple[Fraction, ...]) -> Fraction:
    """A power of two (with sign) that turns one of ``row``'s coefficients into +1, or 1 if none can."""
    if Fraction(1) in row:
        return Fraction(1)
    return next((v for v in sorted(row, key=abs) if _power_of_two(v)), Fraction(1))


def _unit_leads(q: Matrix, p: Matrix) -> tuple[Matrix, Matrix]:
    """``B^T = Q P`` rescaled exactly so that rows of ``P`` and of ``Q`` hold a +1 where they can
    (``G`` absorbs the scale of ``B^T``'s rows)."""
    s = [_unit_scale(row) for row in p]
    p = tuple(tuple(v / c for v in row) for row, c in zip(p, s, strict=True))
    q = tuple(tuple(v * c for v, c in zip(row, s, strict=True)) for row in q)
    q = tuple(tuple(v / _unit_scale(row) for v in row) for row in q)
    return q, p


@functools.cache
def transforms(m: int) -> Transforms:
    """The exact transforms of F(m, 3) for ``m`` in :data:`TILES`, from :data:`_POINTS` and
    infinity: the transposed Toom-Cook product, ``A^T = V_m^T``, ``G = V_3``, ``B^T = V^-T`` for the
    evaluation matrices ``V``, ``B^T``'s rows scaled to small integers and ``G`` inversely."""
    if m not in _POINTS:
        raise ValueError(f"tile must be one of {TILES}; got {m!r}")
    points = _POINTS[m]
    alpha = len(points) + 1
    m = alpha - KERNEL_SIZE + 1
    bt0 = _transpose(_inverse(_evaluation(points, alpha)))
    bt1 = tuple(tuple(v * _primitive(row) for v in row) for row in bt0)
    pairs = [(i, points.index(-p)) for i, p in enumerate(points) if p > 0 and -p in points]  # +-p
    q_in, p_in = _unit_leads(*_pair_rows(bt1, pairs))  # B^T = Q P: P first
    bt = _matmul(q_in, p_in)
    # Row j of B^T is row j of V^-T times some c_j; G's row j takes 1 / c_j.
    scales = [
        next(b / b0 for b, b0 in zip(row, row0, strict=True) if b0) for row, row0 in zip(bt, bt0, strict=True)
    ]
    g = tuple(
        tuple(v / c for v in row) for row, c in zip(_evaluation(points, KERNEL_SIZE), scales, strict=True)
    )
    at = _transpose(_evaluation(points, m))
    q_out, p_out = _pair_rows(_transpose(at), pairs)  # A = Q P
    input_stages = (_sparse(p_in), _sparse(q_in))
    output_stages = (_sparse(_transpose(q_out)), _sparse(_transpose(p_out)))  # A^T = P^T Q^T: Q^T first
    ones = next((j for j, col in enumerate(_transpose(at)) if all(v == 1 for v in col)), None)
    return Transforms(m, alpha, g, bt, at, input_stages, output_stages, ones)


def _tile(tile: int) -> Transforms:
    if not isinstance(tile, int) or tile not in TILES:
        raise ValueError(f"tile must be one of {TILES}; got {tile!r}")
    return transforms(tile)


def transform_kernel(weight: torch.Tensor, tile: int = 4) -> torch.Tensor:
    """(K, C, 3, 3) convolution weights -> ((m + 2)^2, C, K) Winograd kernels ``G g G^T``, in float64
    cast once to ``weight``'s dtype; row ``b * (m + 2) + a`` holds entry (a, b), the order in which
    :func:`conv3x3_relu` transforms its input tiles."""
    t = _tile(tile)
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (KERNEL_SIZE, KERNEL_SIZE):
        raise ValueError(f"expected (K, C, 3, 3) weights; got {tuple(weight.shape)}")
    g = torch.tensor([[float(v) for v in row] for row in t.g], dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,kcij,bj->back", g, weight.detach().double(), g)  # see _input_transform
    return u.reshape(t.alpha**2, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def _combine(terms: list[torch.Tensor], row: SparseRow) -> torch.Tensor:
    """``sum(coefficient * terms[index])`` over a sparse row, in place after the first two terms."""
    (j0, c0), *rest = row
    first = terms[j0] if c0 == 1 else terms[j0] * c0
    if not rest:
        return first
    (j1, c1), *rest = rest
    if c1 == 1:
        out = first + terms[j1]
    elif c1 == -1:
        out = first - terms[j1]
    else:
        out = torch.add(first, terms[j1], alpha=c1)
    for j, c in rest:
        if c == 1:
            out.add_(terms[j])
        elif c == -1:
            out.sub_(terms[j])
        else:
            out.add_(terms[j], alpha=c)
    return out


def _apply(stages: tuple[Stage, ...], terms: list[torch.Tensor]) -> list[torch.Tensor]:
    for stage in stages:
        terms = [_combine(terms, row) for row in stage]
    return terms


def _input_transform(x: torch.Tensor, t: Transforms) -> torch.Tensor:
    """(B, H, W, C) -> (alpha^2, B * H/m * W/m, C): ``B^T d B`` of every tile (stride m, zero
    padding 1), at flat index ``b * alpha + a`` for row a and column b of the transformed tile."""
    b, h, w, c = x.shape
    th, tw = h // t.m, w // t.m
    xp = F.pad(x, (0, 0, 1, 1, 1, 1))
    rows = [xp[:, i : i + t.m * th : t.m] for i in range(t.alpha)]  # row i of every tile: (B, th, W + 2, C)
    r = torch.stack(_apply(t.input_stages, rows))  # (alpha_a, B, th, W + 2, C)
    cols = [r[:, :, :, j : j + t.m * tw : t.m] for j in range(t.alpha)]  # (alpha_a, B, th, tw, C)
    return torch.stack(_apply(t.input_stages, cols)).reshape(t.alpha**2, b * th * tw, c)


def _output_transform(prod: torch.Tensor, t: Transforms) -> list[torch.Tensor]:
    """(alpha_b, alpha_a, B, th, tw, K) products -> ``A^T M A`` as m tensors (one per output row
    i of the tile), each (m_j, B, th, tw, K)."""
    cols = torch.stack(_apply(t.output_stages, list(prod.unbind(0))))  # (m_j, alpha_a, B, th, tw, K)
    return _apply(t.output_stages, list(cols.unbind(1)))


def conv3x3_relu(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, pool: bool, tile: int = 4
) -> torch.Tensor:
    """``relu(conv3x3(x) + bias)`` with "same" zero padding, then a 2x2 max-pool when ``pool``.

    (B, H, W, C) NHWC activations (H and W multiples of ``tile``) and ((tile + 2)^2, C, K)
    :func:`transform_kernel` kernels -> (B, H, W, K), or (B, H/2, W/2, K) with ``pool``.

    Raises:
        ValueError: a tile size not in :data:`TILES`, H or W not a multiple of it, or kernels
            that do not match the tile size or the input's channels.
    """
    t = _tile(tile)
    _, h, w, c = x.shape
    if h % t.m or w % t.m:
        raise ValueError(
            f"Winograd F({t.m}x{t.m}, 3x3) needs height and width multiples of {t.m}; got {h}x{w}"
        )
    if kernels.dim() != 3 or kernels.shape[0] != t.alpha**2 or kernels.shape[1] != c:
        raise ValueError(
            f"kernels for F({t.m}x{t.m}, 3x3) on {c} channels are ({t.alpha**2}, {c}, K); got "
            f"{tuple(kernels.shape)} (transform_kernel(weight, tile={t.m}))"
        )
    if _traced():
        return _conv(x, kernels, bias, pool, t, eager=False)
    chunk = examples_per_chunk(t.m, h, w, c, kernels.shape[2])
    if x.shape[0] <= chunk:
        return _conv(x, kernels, bias, pool, t, eager=True)
    return torch.cat([_conv(part, kernels, bias, pool, t, eager=True) for part in torch.split(x, chunk)])


def _traced() -> bool:
    """Whether torch.export / torch.compile / torch.jit.trace is tracing."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())  # type: ignore[no-untyped-call,attr-defined]


def examples_per_chunk(tile: int, height: int, width: int, c_in: int, c_out: int) -> int:
    """How many examples :func:`conv3x3_relu` computes at once in eager mode: enough that the
    products reach :data:`CHUNK_BYTES` and each matrix product has at least ``min(C, K)`` rows."""
    t = _tile(tile)
    tiles = (height // t.m) * (width // t.m)
    product_bytes = t.alpha**2 * tiles * max(c_in, c_out) * 4
    return max(1, -(-CHUNK_BYTES // product_bytes), -(-min(c_in, c_out) // tiles))


def _conv(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, pool: bool, t: Transforms, *, eager: bool
) -> torch.Tensor:
    """:func:`conv3x3_relu` on one chunk; ``eager`` adds the bias to the products at (ones, ones)
    and applies ReLU in place."""
    b, h, w, _ = x.shape
    k = kernels.shape[2]
    th, tw = h // t.m, w // t.m
    v = _input_transform(x, t)
    # One input channel (conv1): the products are outer products, 3x faster as a broadcast multiply.
    prod = (v * kernels if kernels.shape[1] == 1 else torch.bmm(v, kernels)).reshape(
        t.alpha, t.alpha, b, th, tw, k
    )
    fold = eager and t.ones is not None
    if fold:
        prod[t.ones, t.ones].add_(bias)
    y = _output_transform(prod, t)  # y[i]: (m_j, B, th, tw, K), output row i of every tile
    if pool:  # rows 2p, 2p + 1, then columns 2q, 2q + 1 of each tile
        y = [torch.maximum(y[i], y[i + 1]) for i in range(0, t.m, 2)]
        y = [torch.maximum(z[0::2], z[1::2]) for z in y]
    n = len(y)  # outputs per tile and axis: m, or m / 2 after pooling
    # One copy into (B, th, n_i, tw, n_j, K): NHWC with n x n outputs per tile.
    out = torch.stack([z.permute(1, 2, 3, 0, 4) for z in y], dim=2).reshape(b, th * n, tw * n, k)
    return torch.relu_(out) if fold else torch.relu(out + bias)


def conv3x3_relu_direct(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool
) -> torch.Tensor:
    """:func:`conv3x3_relu` by direct convolution (``F.conv2d``), NHWC in and out, with (K, C, 3, 3)
    ``weight``; eager mode computes :data:`DIRECT_CHUNK_BYTES` of outputs at a time."""
    _, h, w, _ = x.shape
    if pool and (h % 2 or w % 2):
        raise ValueError(f"a 2x2 max-pool needs even height and width; got {h}x{w}")
    chunk = max(1, -(-DIRECT_CHUNK_BYTES // (h * w * weight.shape[0] * x.element_size())))
    if _traced() or x.shape[0] <= chunk:  # traced: one graph, whatever the batch
        return _direct(x, weight, bias, pool)
    return torch.cat([_direct(part, weight, bias, pool) for part in torch.split(x, chunk)])


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    # NHWC permuted to NCHW is a channels_last view: no copy, and oneDNN's fastest layout.
    y = F.relu(F.conv2d(x.permute(0, 3, 1, 2), weight, bias, padding=1))
    return (F.max_pool2d(y, 2) if pool else y).permute(0, 2, 3, 1).contiguous()
