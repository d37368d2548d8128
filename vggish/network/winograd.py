"""Winograd F(4 x 4, 3 x 3) convolutions for VGGish on the CPU.

A 3x3 convolution computes each m x m block of outputs from an (m + 2) x (m + 2) tile of inputs.
Winograd's minimal filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016) does that with (m + 2)^2 multiplications per input/output channel pair instead of
9 m^2: the tile and the kernel are transformed (``V = B^T d B``, ``U = G g G^T``), multiplied
element by element (over channels, (m + 2)^2 independent matrix products), and transformed back
(``Y = A^T M A``). F(4x4) does 4x fewer multiplications; larger tiles cost more transform work per
product and lose float32 accuracy.

The transforms are built here (Toom-Cook: evaluation at points 0, +-1, +-1/2 and infinity;
Barabasz et al., "Error analysis and improving the accuracy of Winograd convolution for
deep neural networks", 2020), exactly in rational arithmetic. ``B^T`` keeps small integer rows,
``A^T`` holds powers of two, so the float work of the data transforms is adds, subtracts and a few
multiplications by 2, 4, 5/4 ...; all other constants go into the kernel transform ``G``, computed
in float64 and rounded once. Each point pair +-p shares its even and odd partial sums, so the data
transforms take about half the additions of a plain matrix product.

Activations are NHWC (channels last and contiguous), the layout in which the transforms are
strided slices and the products are one batched matrix multiply. Everything is a plain torch op
on static shapes, so ``torch.export`` / ``torch.onnx.export(dynamo=True)`` trace it with a dynamic
batch axis. In eager mode a batch is computed in chunks whose intermediates stay in cache
(:func:`examples_per_chunk`); :func:`conv3x3_relu_direct` does the same for direct convolutions.
:data:`TORCH_TILES` / :data:`ONNX_TILES` say which layer runs which way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

import torch
from torch.nn import functional as F

TILES = (4,)
"""Output tile sizes m of the F(m x m, 3 x 3) algorithms built here (``benchmarks/bench_winograd.py``
builds other sizes from their points to compare)."""

# The fastest algorithm per layer (docs/winograd.md; benchmarks/bench_winograd.py measures a
# machine): a tile size for conv3x3_relu, or 0 for a direct convolution (conv3x3_relu_direct in
# PyTorch, ONNX's Conv in a graph). Eager PyTorch computes in cache-sized chunks, where F(4x4) pays
# from conv2 on; ONNX Runtime runs the graph whole, where its own Conv wins for conv1 and conv2.
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
# F(4): 0, +-1, +-1/2 has about the float32 error of Lavin's 0, +-1, +-2 on VGGish's layers;
# Barabasz et al.'s 0, +-1, 1/2, -2 is more accurate but pairs only +-1, so its transforms cost
# more; all three are more accurate end to end than float32 direct convolution.
_POINTS: dict[int, tuple[Fraction, ...]] = {
    4: (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-1, 2)),
}

Matrix = tuple[tuple[Fraction, ...], ...]
# One row of a sparse linear map: (input index, coefficient) for each non-zero coefficient.
SparseRow = tuple[tuple[int, float], ...]
Stage = tuple[SparseRow, ...]


@dataclass(frozen=True)
class Transforms:
    """The matrices of F(m, 3) in one dimension (the 2-D algorithm applies them on both axes).

    Attributes:
        m: outputs per tile.
        alpha: inputs per tile, m + 2.
        g: (alpha, 3) kernel transform ``G``, exact.
        bt: (alpha, alpha) input transform ``B^T``, exact.
        at: (m, alpha) output transform ``A^T``, exact.
        input_stages: ``B^T`` as sparse stages applied one after the other (``B^T = Q P``).
        output_stages: ``A^T`` likewise.
        ones: the column of ``A^T`` that is all ones (the point 1), or None: a constant added to
            the products at (ones, ones) reaches every output of the tile unchanged.
    """

    m: int
    alpha: int
    g: Matrix
    bt: Matrix
    at: Matrix
    input_stages: tuple[Stage, ...]
    output_stages: tuple[Stage, ...]
    ones: int | None


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return tuple(
        tuple(
            sum((x * y for x, y in zip(row, col, strict=True)), Fraction(0)) for col in zip(*b, strict=True)
        )
        for row in a
    )


def _transpose(a: Matrix) -> Matrix:
    return tuple(zip(*a, strict=True))


def _inverse(a: Matrix) -> Matrix:
    """Exact Gauss-Jordan inverse of a small square rational matrix."""
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
    lcm = functools.reduce(lambda a, b: a * b // _gcd(a, b), (v.denominator for v in row), 1)
    gcd = functools.reduce(_gcd, (abs(v.numerator * lcm // v.denominator) for v in row), 0)
    scale = Fraction(lcm, gcd)
    positive = sum(v > 0 for v in row) - sum(v < 0 for v in row)
    return scale if positive >= 0 else -scale


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _sparse(matrix: Matrix) -> Stage:
    """A dense exact matrix as sparse float rows, +-1 coefficients first (cheapest to start a sum)."""
    out = []
    for row in matrix:
        entries = [(j, float(v)) for j, v in enumerate(row) if v != 0]
        entries.sort(key=lambda e: (e[1] != 1, e[1] != -1))
        out.append(tuple(entries))
    return tuple(out)


def _pair_rows(matrix: Matrix, pairs: list[tuple[int, int]]) -> tuple[Matrix, Matrix]:
    """``matrix = Q P`` with rows i, j of each point pair (p, -p) shared: ``P`` holds their even and
    odd parts ``(row_i +- row_j) / 2``, ``Q`` adds or subtracts them; other rows pass through.

    A pair is split only where it needs fewer non-zero coefficients than the two rows.
    """
    parts: list[tuple[Fraction, ...]] = []
    picks: dict[int, tuple[tuple[int, Fraction], ...]] = {}  # row -> its (slot in P, coefficient)
    for i, j in pairs:
        even = tuple((a + b) / 2 for a, b in zip(matrix[i], matrix[j], strict=True))
        odd = tuple((a - b) / 2 for a, b in zip(matrix[i], matrix[j], strict=True))
        if sum(v != 0 for v in even + odd) < sum(v != 0 for v in matrix[i] + matrix[j]):
            parts += [even, odd]
            e, o = len(parts) - 2, len(parts) - 1
            picks[i] = ((e, Fraction(1)), (o, Fraction(1)))
            picks[j] = ((e, Fraction(1)), (o, Fraction(-1)))
    for i, row in enumerate(matrix):
        if i not in picks:
            parts.append(row)
            picks[i] = ((len(parts) - 1, Fraction(1)),)
    q = []
    for i in range(len(matrix)):
        q_row = [Fraction(0)] * len(parts)
        for slot, v in picks[i]:
            q_row[slot] = v
        q.append(tuple(q_row))
    p = tuple(parts)
    if _matmul(tuple(q), p) != matrix:
        raise AssertionError("Winograd transform factorisation is not exact")
    return tuple(q), p


def _power_of_two(v: Fraction) -> bool:
    return (
        v != 0 and abs(v.numerator) & (abs(v.numerator) - 1) == 0 and v.denominator & (v.denominator - 1) == 0
    )


def _unit_scale(row: tuple[Fraction, ...]) -> Fraction:
    """A power of two (with sign) that turns one of ``row``'s coefficients into +1, or 1 if none can.

    A sum that starts from a coefficient 1 costs one operation less; powers of two scale exactly.
    """
    if Fraction(1) in row:
        return Fraction(1)
    return next((v for v in sorted(row, key=abs) if _power_of_two(v)), Fraction(1))


def _unit_leads(q: Matrix, p: Matrix) -> tuple[Matrix, Matrix]:
    """``B^T = Q P`` rescaled so that rows of ``P`` and of ``Q`` hold a +1 where they can.

    Row r of ``P`` divided by s is compensated by column r of ``Q`` times s, exactly; a row of
    ``Q`` scales a row of ``B^T``, which ``G`` absorbs.
    """
    s = [_unit_scale(row) for row in p]
    p = tuple(tuple(v / c for v in row) for row, c in zip(p, s, strict=True))
    q = tuple(tuple(v * c for v, c in zip(row, s, strict=True)) for row in q)
    q = tuple(tuple(v / _unit_scale(row) for v in row) for row in q)
    return q, p


def _point_pairs(points: tuple[Fraction, ...]) -> list[tuple[int, int]]:
    return [(i, points.index(-p)) for i, p in enumerate(points) if p > 0 and -p in points]


@functools.cache
def transforms(m: int) -> Transforms:
    """The exact transforms of F(m, 3) for ``m`` in :data:`TILES`, from :data:`_POINTS`."""
    if m not in _POINTS:
        raise ValueError(f"tile must be one of {TILES}; got {m!r}")
    return build_transforms(_POINTS[m])


def build_transforms(points: tuple[Fraction, ...]) -> Transforms:
    """F(m, 3) for m = len(points) - 1 from its finite interpolation points (infinity is added).

    ``y = A^T [(G g) * (B^T d)]`` computes the correlation ``y_i = sum_k g_k d_(i+k)``: it is the
    transpose of the Toom-Cook product of polynomials ``g(x) d(x)`` (evaluate both at the points,
    multiply, interpolate), with ``A^T = V_m^T``, ``G = V_3``, ``B^T = V^-T`` for the evaluation
    matrices ``V`` of each degree. Each row of ``B^T`` is scaled to small integers; ``G`` takes the
    inverse scale.
    """
    alpha = len(points) + 1
    m = alpha - KERNEL_SIZE + 1
    if m < 1 or len(set(points)) != len(points):
        raise ValueError(f"need at least {KERNEL_SIZE - 1} distinct finite points; got {points}")
    bt0 = _transpose(_inverse(_evaluation(points, alpha)))
    bt1 = tuple(tuple(v * _primitive(row) for v in row) for row in bt0)
    pairs = _point_pairs(points)
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
    """(K, C, 3, 3) convolution weights -> ((m + 2)^2, C, K) Winograd kernels ``G g G^T``.

    Computed in float64 (``G``'s exact fractions rounded there, ~1e-16), so that float32 kernels
    carry essentially one rounding, the final cast to ``weight``'s dtype. Row
    ``b * (m + 2) + a`` holds entry (a, b) of the transformed kernels, the order in which
    :func:`conv3x3_relu` transforms its input tiles.

    Args:
        weight: (K, C, 3, 3) weights of a 3x3 convolution (any float dtype, any device).
        tile: m of F(m x m, 3 x 3), one of :data:`TILES`.

    Returns:
        ((m + 2)^2, C, K) contiguous, in ``weight``'s dtype and device.
    """
    t = _tile(tile)
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (KERNEL_SIZE, KERNEL_SIZE):
        raise ValueError(f"expected (K, C, 3, 3) weights; got {tuple(weight.shape)}")
    g = torch.tensor([[float(v) for v in row] for row in t.g], dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,kcij,bj->back", g, weight.detach().double(), g)  # see _input_transform
    return u.reshape(t.alpha**2, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def _combine(terms: list[torch.Tensor], row: SparseRow) -> torch.Tensor:
    """``sum(coefficient * terms[index])`` over a sparse row: the first two terms make a new
    tensor, the others are added to it in place (adds and subtracts for +-1)."""
    (j0, c0), *rest = row
    if not rest:
        return terms[j0] if c0 == 1 else terms[j0] * c0
    (j1, c1), *rest = rest
    first = terms[j0] if c0 == 1 else terms[j0] * c0
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
    padding 1), at flat index ``b * alpha + a`` for row a and column b of the transformed tile.

    The row transform runs on strided row slices of the padded input; its alpha results are
    stacked so that the column transform is one set of operations on all of them.
    """
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

    In eager mode a large batch is computed a few examples at a time (:func:`examples_per_chunk`),
    so that each chunk's transformed tiles and products stay in cache; traced (``torch.export``,
    ``torch.onnx.export``, ``torch.jit.trace``, ``torch.compile``) it is one graph for any batch.

    Args:
        x: (B, H, W, C) NHWC activations; H and W multiples of ``tile``.
        kernels: ((tile + 2)^2, C, K) from :func:`transform_kernel` with the same ``tile``, in
            ``x``'s dtype.
        bias: (K,).
        pool: fuse the 2x2 max-pool: an output tile of even size holds whole pooling windows,
            and max commutes with adding the bias and with ReLU.
        tile: m of F(m x m, 3 x 3), one of :data:`TILES`.

    Returns:
        (B, H, W, K), or (B, H/2, W/2, K) with ``pool``; NHWC, ``x``'s dtype.

    Raises:
        ValueError: a tile size not in :data:`TILES`, H or W not a multiple of it, kernels that
            do not match the tile size or the input's channels, or ``pool`` with an odd tile.
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
    """Whether torch.export / torch.compile / torch.jit.trace is tracing: one graph for any batch."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing())  # type: ignore[no-untyped-call,attr-defined]


def examples_per_chunk(tile: int, height: int, width: int, c_in: int, c_out: int) -> int:
    """How many examples :func:`conv3x3_relu` computes at once in eager mode.

    Enough that the chunk's products (``(tile + 2)^2 x tiles x max(C, K)`` floats) reach
    :data:`CHUNK_BYTES`, and that each matrix product has at least ``min(C, K)`` rows, so that
    reading the transformed kernels (``(tile + 2)^2 x C x K``) costs no more than the products.
    """
    t = _tile(tile)
    tiles = (height // t.m) * (width // t.m)
    product_bytes = t.alpha**2 * tiles * max(c_in, c_out) * 4
    return max(1, -(-CHUNK_BYTES // product_bytes), -(-min(c_in, c_out) // tiles))


def _conv(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, pool: bool, t: Transforms, *, eager: bool
) -> torch.Tensor:
    """:func:`conv3x3_relu` on one chunk, arguments checked.

    ``eager`` adds the bias to the products at (ones, ones), 1 / m^2 of the work of adding it to
    the outputs, and applies ReLU in place; traced graphs keep plain ``relu(y + bias)``.
    """
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
    """:func:`conv3x3_relu` by direct convolution (``F.conv2d``, oneDNN on the CPU), NHWC in and out.

    For the layers where Winograd does not pay (conv1: one input channel). In eager mode a large
    batch is computed :data:`DIRECT_CHUNK_BYTES` of outputs at a time, so that ReLU and the pool
    read the convolution's output from cache.

    Args:
        x: (B, H, W, C) NHWC activations (contiguous).
        weight: (K, C, 3, 3) convolution weights, in ``x``'s dtype (channels_last is fastest).
        bias: (K,).
        pool: a 2x2 max-pool after the ReLU (H and W even).

    Returns:
        (B, H, W, K), or (B, H/2, W/2, K) with ``pool``; NHWC, ``x``'s dtype.
    """
    _, h, w, _ = x.shape
    if pool and (h % 2 or w % 2):
        raise ValueError(f"a 2x2 max-pool needs even height and width; got {h}x{w}")
    if _traced():
        return _direct(x, weight, bias, pool)
    chunk = max(1, -(-DIRECT_CHUNK_BYTES // (h * w * weight.shape[0] * x.element_size())))
    if x.shape[0] <= chunk:
        return _direct(x, weight, bias, pool)
    return torch.cat([_direct(part, weight, bias, pool) for part in torch.split(x, chunk)])


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    # NHWC permuted to NCHW is a channels_last view: no copy, and oneDNN's fastest layout.
    y = F.relu(F.conv2d(x.permute(0, 3, 1, 2), weight, bias, padding=1))
    return (F.max_pool2d(y, 2) if pool else y).permute(0, 2, 3, 1).contiguous()
