"""The raw Numba kernels behind :mod:`groupconv.formulations.numba_direct`.

Every kernel sees 3-D data, channels first and C-contiguous: x (N, C, D, H, W), y (N, O, OD, OH, OW),
weight (O, Cg, KD, KH, KW); 1-D and 2-D convolutions arrive with leading spatial dims of 1.
``stride``, ``dilation`` and ``pad`` (the zero padding before each dim) are 3-tuples.

Two families. The row kernels (any stride: ``rows`` for the forward and, as its adjoint, the
input gradient; ``weight_grad``) walk one loop nest: a row of output positions meets a row of
input positions, tap by tap, and the innermost loop runs along that row, clipped per tap so it
needs no test for padding. Only the innermost statement differs:

    rows          y[o, row]  += w[o, c, tap] * x[c, row']
    rows adjoint  x[c, row'] += w[o, c, tap] * y[o, row]      (the input gradient: a scatter)
    weight_grad   w[o, c, tap] += sum(y[o, row] * x[c, row'])

The plane kernels (``plane_forward``, ``plane_weight_grad``; stride 1) work on whole planes of
zero-bordered scratch, described below, where rows of a few dozen pixels would be too short
for SIMD loops to pay.

Each kernel does one worker's even share of the (sample, group) tasks; ``worker`` and ``workers``
come last. The entries at the end run the shares, one per thread (see :mod:`._numba_runtime`).

Flat indices are unsigned so that Numba emits no negative-index wraparound, which keeps
LLVM vectorising; arrays are indexed in full inside the task loops because a view there
costs an atomic reference count shared by all threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from . import _numba_runtime as runtime

_OPTIONS = {"cache": True, "nogil": True, "fastmath": {"reassoc", "contract"}}  # NaN and inf stay exact


@numba.njit(**_OPTIONS)
def _tap_range(out_size, in_size, stride, shift):
    """The output positions [lo, hi) whose input position ``o * stride + shift`` lies in [0, in_size)."""
    lo = max(0, -(shift // stride))
    hi = min(out_size, (in_size - 1 - shift) // stride + 1)
    return lo, max(lo, hi)


@numba.njit(**_OPTIONS)
def _axpy(target, target_start, target_step, source, source_start, source_step, scale, count):
    """target[target_start + i * target_step] += scale * source[source_start + i * source_step], i < count."""
    if target_step == 1 and source_step == 1:  # the common case, in its own contiguous SIMD loop
        for i in range(uint64(count)):
            target[uint64(target_start) + i] += scale * source[uint64(source_start) + i]
    else:
        for i in range(uint64(count)):
            target[uint64(target_start) + i * uint64(target_step)] += (
                scale * source[uint64(source_start) + i * uint64(source_step)]
            )


@numba.njit(**_OPTIONS)
def _dot(a, a_start, b, b_start, b_step, count):
    """sum(a[a_start + i] * b[b_start + i * b_step]), i < count."""
    total = a.dtype.type(0)
    if b_step == 1:
        for i in range(uint64(count)):
            total += a[uint64(a_start) + i] * b[uint64(b_start) + i]
    else:
        for i in range(uint64(count)):
            total += a[uint64(a_start) + i] * b[uint64(b_start) + i * uint64(b_step)]
    return total


@numba.njit(**_OPTIONS)
def rows(x, weight, y, stride, dilation, pad, adjoint, worker, workers):
    """y = conv(x, weight), or with ``adjoint`` x = its adjoint applied to y (the input gradient), for
    ``worker``'s share of the (sample, group) tasks; each task owns the channels it writes."""
    n_batch, channels, in_d, in_h, in_w = x.shape
    out_channels, cg, k_d, k_h, k_w = weight.shape
    out_d, out_h, out_w = y.shape[2], y.shape[3], y.shape[4]
    groups = channels // cg
    og = out_channels // groups
    xf, yf = x.ravel(), y.ravel()
    plane = in_d * in_h * in_w
    tasks = n_batch * groups
    for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
        n, g = task // groups, task % groups
        if adjoint:  # x's group is summed into from every output row: clear it first
            start = (n * channels + g * cg) * plane
            for i in range(uint64(cg * plane)):
                xf[uint64(start) + i] = 0
        for o in range(g * og, g * og + og):
            for od in range(out_d):
                for oh in range(out_h):
                    y_row = ((n * out_channels + o) * out_d + od) * out_h * out_w + oh * out_w
                    if not adjoint:
                        for ow in range(uint64(out_w)):
                            yf[uint64(y_row) + ow] = 0
                    for c in range(cg):
                        for kd in range(k_d):
                            i_d = od * stride[0] + kd * dilation[0] - pad[0]
                            if i_d < 0 or i_d >= in_d:
                                continue
                            for kh in range(k_h):
                                i_h = oh * stride[1] + kh * dilation[1] - pad[1]
                                if i_h < 0 or i_h >= in_h:
                                    continue
                                x_row = (((n * channels + g * cg + c) * in_d + i_d) * in_h + i_h) * in_w
                                for kw in range(k_w):
                                    shift = kw * dilation[2] - pad[2]
                                    lo, hi = _tap_range(out_w, in_w, stride[2], shift)
                                    x_start, scale = x_row + lo * stride[2] + shift, weight[o, c, kd, kh, kw]
                                    if adjoint:
                                        _axpy(xf, x_start, stride[2], yf, y_row + lo, 1, scale, hi - lo)
                                    else:
                                        _axpy(yf, y_row + lo, 1, xf, x_start, stride[2], scale, hi - lo)


@numba.njit(**_OPTIONS)
def weight_grad(x, grad_y, partial, stride, dilation, pad, worker, workers):
    """partial[worker] = the weight gradient of ``worker``'s share of the (sample, group) tasks."""
    n_batch, channels, in_d, in_h, in_w = x.shape
    out_channels, cg, k_d, k_h, k_w = partial.shape[1:]
    out_d, out_h, out_w = grad_y.shape[2], grad_y.shape[3], grad_y.shape[4]
    groups = channels // cg
    og = out_channels // groups
    xf, gyf = x.ravel(), grad_y.ravel()
    tasks = n_batch * groups
    for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
        n, g = task // groups, task % groups
        for o in range(g * og, g * og + og):
            for c in range(cg):
                for kd in range(k_d):
                    for kh in range(k_h):
                        for kw in range(k_w):
                            shift = kw * dilation[2] - pad[2]
                            lo, hi = _tap_range(out_w, in_w, stride[2], shift)
                            total = partial.dtype.type(0)
                            for od in range(out_d):
                                i_d = od * stride[0] + kd * dilation[0] - pad[0]
                                if i_d < 0 or i_d >= in_d:
                                    continue
                                for oh in range(out_h):
                                    i_h = oh * stride[1] + kh * dilation[1] - pad[1]
                                    if i_h < 0 or i_h >= in_h:
                                        continue
                                    y_row = ((n * out_channels + o) * out_d + od) * out_h * out_w + oh * out_w
                                    x_row = (((n * channels + g * cg + c) * in_d + i_d) * in_h + i_h) * in_w
                                    total += _dot(
                                        gyf, y_row + lo, xf, x_row + lo * stride[2] + shift, stride[2], hi - lo
                                    )
                            partial[worker, o, c, kd, kh, kw] += total


# --- stride 1: whole planes. A row of 28 pixels is too short for SIMD loops to pay, so each
# sample's group of input planes is first copied into zero-bordered scratch planes of row pitch
# P = OW + (KW - 1) * DW. Output row oh, column ow then reads scratch position (oh + kh*dh) * P +
# ow + kw*dw: one tap is one long contiguous loop over all OH * P positions of an output plane.
# The P - OW columns past each row's end are garbage (they wrap onto the next row) and are never
# copied out.


@numba.njit(**_OPTIONS)
def _copy_rows(target, target_start, target_pitch, source, source_start, source_pitch, rows, width):
    """target[target_start + r * target_pitch + i] = source[source_start + r * source_pitch + i]."""
    for r in range(rows):
        t, s = uint64(target_start + r * target_pitch), uint64(source_start + r * source_pitch)
        for i in range(uint64(max(0, width))):
            target[t + i] = source[s + i]


@numba.njit(**_OPTIONS)
def _pad_planes(source, n, first_channel, count, pad, scratch, depth, height, pitch):
    """scratch[c] = source[n, first_channel + c] shifted by ``pad`` into a (depth, height, pitch) box.

    Only the box's data region is written: its borders stay as they were (zero, from ``np.zeros``).
    """
    src_d, src_h, src_w = source.shape[2], source.shape[3], source.shape[4]
    flat = source.ravel()
    plane = depth * height * pitch
    w_lo, w_hi = max(0, -pad[2]), max(0, min(src_w, pitch - pad[2]))
    for c in range(count):
        for d in range(max(0, -pad[0]), min(src_d, depth - pad[0])):
            for h in range(max(0, -pad[1]), min(src_h, height - pad[1])):
                start = (((n * source.shape[1] + first_channel + c) * src_d + d) * src_h + h) * src_w
                target = c * plane + ((d + pad[0]) * height + h + pad[1]) * pitch + pad[2]
                _copy_rows(scratch, target + w_lo, 0, flat, start + w_lo, 0, 1, w_hi - w_lo)


@numba.njit(**_OPTIONS)
def _tap_offsets(offsets, cg, kernel, dilation, height, pitch, plane):
    """offsets[t] = where tap t = (c, kd, kh, kw), in weight order, starts reading the scratch."""
    t = 0
    for c in range(cg):
        for kd in range(kernel[0]):
            for kh in range(kernel[1]):
                for kw in range(kernel[2]):
                    offsets[t] = c * plane + (kd * dilation[0] * height + kh * dilation[1]) * pitch + kw * dilation[2]
                    t += 1


@numba.njit(**_OPTIONS)
def _sum_taps(total, scratch, base, offsets, weights, span):
    """total[i] = sum over taps t of weights[t] * scratch[base + offsets[t] + i], i < span.

    Four taps share a pass over ``total``: one load and store of it per four multiply-adds;
    the first pass writes it without reading.
    """
    taps, t = offsets.size, 0
    if taps < 4:
        for i in range(uint64(span)):
            total[i] = 0
    while t + 4 <= taps:
        a, b = uint64(base + offsets[t]), uint64(base + offsets[t + 1])
        c, d = uint64(base + offsets[t + 2]), uint64(base + offsets[t + 3])
        wa, wb, wc, wd = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
        first = t == 0
        for i in range(uint64(span)):
            value = wa * scratch[a + i] + wb * scratch[b + i] + wc * scratch[c + i] + wd * scratch[d + i]
            total[i] = value if first else total[i] + value
        t += 4
    for rest in range(t, taps):
        _axpy(total, 0, 1, scratch, base + offsets[rest], 1, weights[rest], span)


@numba.njit(**_OPTIONS)
def _sum_taps_pair(total, scratch, base, offsets, weights, span):
    """``_sum_taps`` for two output channels at once: total[k * span + i] with weights[k * taps + t],
    k < 2, so that each load of the scratch feeds two multiply-adds. Six taps share a pass while six
    remain (a pair's eight loads and stores per four taps become ten per six: 2 channels per group
    of a 3x3 layer, 18 taps, ran 14% faster), then four, then one at a time."""
    taps, t = offsets.size, 0
    for i in range(uint64(2 * span)):
        total[i] = 0
    second = uint64(span)
    while t + 6 <= taps:
        a, b = uint64(base + offsets[t]), uint64(base + offsets[t + 1])
        c, d = uint64(base + offsets[t + 2]), uint64(base + offsets[t + 3])
        e, f = uint64(base + offsets[t + 4]), uint64(base + offsets[t + 5])
        wa, wb, wc, wd, we, wf = weights[t : t + 6]
        va, vb, vc, vd, ve, vf = weights[taps + t : taps + t + 6]
        for i in range(uint64(span)):
            sa, sb, sc, sd, se, sf = (
                scratch[a + i],
                scratch[b + i],
                scratch[c + i],
                scratch[d + i],
                scratch[e + i],
                scratch[f + i],
            )
            total[i] += wa * sa + wb * sb + wc * sc + wd * sd + we * se + wf * sf
            total[second + i] += va * sa + vb * sb + vc * sc + vd * sd + ve * se + vf * sf
        t += 6
    while t + 4 <= taps:
        a, b = uint64(base + offsets[t]), uint64(base + offsets[t + 1])
        c, d = uint64(base + offsets[t + 2]), uint64(base + offsets[t + 3])
        wa, wb, wc, wd = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
        va, vb, vc, vd = weights[taps + t], weights[taps + t + 1], weights[taps + t + 2], weights[taps + t + 3]
        for i in range(uint64(span)):
            sa, sb, sc, sd = scratch[a + i], scratch[b + i], scratch[c + i], scratch[d + i]
            total[i] += wa * sa + wb * sb + wc * sc + wd * sd
            total[second + i] += va * sa + vb * sb + vc * sc + vd * sd
        t += 4
    for rest in range(t, taps):
        _axpy(total, 0, 1, scratch, base + offsets[rest], 1, weights[rest], span)
        _axpy(total, span, 1, scratch, base + offsets[rest], 1, weights[taps + rest], span)


@numba.njit(**_OPTIONS)
def plane_forward(source, weight, out, dilation, pad, worker, workers):
    """out = conv(source, weight) at stride 1 for ``worker``'s share of the (sample, group) tasks;
    ``pad`` (before each dim) may be negative: a crop."""
    n_batch, channels = source.shape[0], source.shape[1]
    out_channels, cg, k_d, k_h, k_w = weight.shape
    out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
    groups = channels // cg
    og = out_channels // groups
    depth, height = out_d + (k_d - 1) * dilation[0], out_h + (k_h - 1) * dilation[1]
    pitch = out_w + (k_w - 1) * dilation[2]
    plane = depth * height * pitch
    span = out_h * pitch  # the positions of one output slice
    out_flat = out.ravel()
    tasks = n_batch * groups
    scratch = np.zeros(cg * plane + (k_w - 1) * dilation[2], source.dtype)
    total = np.empty(2 * span, source.dtype)
    taps = cg * k_d * k_h * k_w
    offsets = np.empty(taps, np.int64)
    _tap_offsets(offsets, cg, (k_d, k_h, k_w), dilation, height, pitch, plane)
    for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
        n, g = task // groups, task % groups
        _pad_planes(source, n, g * cg, cg, pad, scratch, depth, height, pitch)
        for o in range(g * og, g * og + og, 2):  # output channels in pairs, and an odd one alone
            pair = min(2, g * og + og - o)
            weights = weight.ravel()[o * taps : (o + pair) * taps]
            for od in range(out_d):
                if pair == 2:
                    _sum_taps_pair(total, scratch, od * height * pitch, offsets, weights, span)
                else:
                    _sum_taps(total, scratch, od * height * pitch, offsets, weights, span)
                for k in range(pair):
                    start = ((n * out_channels + o + k) * out_d + od) * out_h * out_w
                    _copy_rows(out_flat, start, out_w, total, k * span, pitch, out_h, out_w)


@numba.njit(**_OPTIONS)
def plane_weight_grad(x, grad_y, partial, kernel, dilation, pad, worker, workers):
    """partial[worker, o, t] = the gradient of weight[o] (flattened) at stride 1 from ``worker``'s share
    of the (sample, group) tasks, taken in memory order so that the hardware prefetches the planes.

    grad_y is copied to the scratch's row pitch, with zeros in the garbage columns. They meet x
    values that no true product uses, which is harmless unless one is inf or NaN (0 * inf is NaN):
    a sum that comes out non-finite is redone with those columns masked out.
    """
    n_batch, channels = x.shape[0], x.shape[1]
    out_channels, taps = partial.shape[1:]
    out_d, out_h, out_w = grad_y.shape[2], grad_y.shape[3], grad_y.shape[4]
    cg = taps // (kernel[0] * kernel[1] * kernel[2])
    groups = channels // cg
    og = out_channels // groups
    depth, height = out_d + (kernel[0] - 1) * dilation[0], out_h + (kernel[1] - 1) * dilation[1]
    pitch = out_w + (kernel[2] - 1) * dilation[2]
    plane = depth * height * pitch
    span = out_h * pitch
    valid = np.empty(span, np.bool_)
    for i in range(span):
        valid[i] = i % pitch < out_w
    tasks = n_batch * groups
    scratch = np.zeros(cg * plane + (kernel[2] - 1) * dilation[2], x.dtype)
    grads = np.zeros(og * out_d * span, x.dtype)
    offsets = np.empty(taps, np.int64)
    _tap_offsets(offsets, cg, kernel, dilation, height, pitch, plane)
    sums = np.empty(8, x.dtype)
    for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
        n, g = task // groups, task % groups
        _pad_planes(x, n, g * cg, cg, pad, scratch, depth, height, pitch)
        _pad_planes(grad_y, n, g * og, og, (0, 0, 0), grads, out_d, out_h, pitch)
        for o in range(0, og, 2):  # output channels in pairs (and an odd one alone), four taps per pass
            pair = min(2, og - o)
            for t in range(0, taps, 4):
                count = min(4, taps - t)
                sums[:] = 0
                for od in range(out_d):
                    first, x_start = (o * out_d + od) * span, od * height * pitch
                    if count == 4 and pair == 2:
                        _correlate4_pair(sums, grads, first, first + out_d * span, scratch, x_start, offsets, t, span)
                        continue
                    if count == 4:
                        _correlate4(sums, grads, first, scratch, x_start, offsets, t, span)
                        continue
                    for k in range(pair):
                        for j in range(count):  # the last one to three taps: plain dot products
                            tap_start = x_start + offsets[t + j]
                            sums[4 * k + j] += _dot(grads, first + k * out_d * span, scratch, tap_start, 1, span)
                for k in range(pair):
                    for j in range(count):
                        total = sums[4 * k + j]
                        if not np.isfinite(total):
                            total = 0
                            for od in range(out_d):
                                x_start = od * height * pitch + offsets[t + j]
                                grads_start = ((o + k) * out_d + od) * span
                                total += _masked_dot(grads, grads_start, scratch, x_start, valid)
                        partial[worker, g * og + o + k, t + j] += total


@numba.njit(**_OPTIONS)
def _correlate4(sums, grads, grads_start, scratch, base, offsets, t, span):
    """sums[j] += sum(grads[grads_start + i] * scratch[base + offsets[t + j] + i]), j < 4, i < span:
    four taps share each load of grads."""
    a, b = uint64(base + offsets[t]), uint64(base + offsets[t + 1])
    c, d = uint64(base + offsets[t + 2]), uint64(base + offsets[t + 3])
    g0 = uint64(grads_start)
    sa = sb = sc = sd = sums.dtype.type(0)
    for i in range(uint64(span)):
        gradient = grads[g0 + i]
        sa += gradient * scratch[a + i]
        sb += gradient * scratch[b + i]
        sc += gradient * scratch[c + i]
        sd += gradient * scratch[d + i]
    sums[0] += sa
    sums[1] += sb
    sums[2] += sc
    sums[3] += sd


@numba.njit(**_OPTIONS)
def _correlate4_pair(sums, grads, first, second, scratch, base, offsets, t, span):
    """sums[4 * k + j] += sum(grads[start_k + i] * scratch[base + offsets[t + j] + i]), j < 4, i < span,
    for the two grad_y planes starting at ``first`` and ``second``: each load feeds two or four products."""
    a, b = uint64(base + offsets[t]), uint64(base + offsets[t + 1])
    c, d = uint64(base + offsets[t + 2]), uint64(base + offsets[t + 3])
    f0, f1 = uint64(first), uint64(second)
    sa = sb = sc = sd = ta = tb = tc = td = sums.dtype.type(0)
    for i in range(uint64(span)):
        xa, xb, xc, xd = scratch[a + i], scratch[b + i], scratch[c + i], scratch[d + i]
        g0, g1 = grads[f0 + i], grads[f1 + i]
        sa += g0 * xa
        sb += g0 * xb
        sc += g0 * xc
        sd += g0 * xd
        ta += g1 * xa
        tb += g1 * xb
        tc += g1 * xc
        td += g1 * xd
    sums[0] += sa
    sums[1] += sb
    sums[2] += sc
    sums[3] += sd
    sums[4] += ta
    sums[5] += tb
    sums[6] += tc
    sums[7] += td


@numba.njit(**_OPTIONS)
def _masked_dot(a, a_start, b, b_start, valid):
    """sum(a[a_start + i] * b[b_start + i] where valid[i]), i < len(valid)."""
    total = a.dtype.type(0)
    for i in range(uint64(valid.size)):
        product = a[uint64(a_start) + i] * b[uint64(b_start) + i]
        total += product if valid[i] else 0
    return total


# --- Launching. Each kernel above does one worker's share of its tasks. ``runtime.run`` describes a
# call in a table of int64s (TABLE_FIELDS), and every thread of the team that runs it calls an entry
# with the table's address: the entry reads its arrays out of the table, in place, and runs its share.

KERNELS = ("rows", "weight_grad", "plane_forward", "plane_weight_grad")  # a table's first field
_ARRAY = 1 + runtime.MAX_DIMS  # an array's fields: its address and 6-D shape
A_AT, B_AT, C_AT = 2, 2 + _ARRAY, 2 + 2 * _ARRAY  # after the kernel's index and the itemsize: three arrays
INTS_AT = 2 + 3 * _ARRAY  # then 12 ints
TABLE_FIELDS = INTS_AT + 12


@intrinsic
def _address(typingctx, address):
    """An int64 as a pointer, for ``numba.carray``."""

    def codegen(context, builder, signature, arguments):
        return builder.inttoptr(arguments[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@numba.njit(**_OPTIONS)
def _array(table, at, dtype):
    """The C-contiguous array whose address and 6-D shape are ``table[at : at + 7]``."""
    shape = (table[at + 1], table[at + 2], table[at + 3], table[at + 4], table[at + 5], table[at + 6])
    return numba.carray(_address(table[at]), shape, dtype)


@numba.njit(**_OPTIONS)
def _share(table, dtype, worker, workers):
    """Run the kernel ``table`` describes for ``worker``'s share of its tasks."""
    a, b, c = _array(table, A_AT, dtype), _array(table, B_AT, dtype), _array(table, C_AT, dtype)
    ints = table[INTS_AT:]
    stride, dilation, pad = (ints[0], ints[1], ints[2]), (ints[3], ints[4], ints[5]), (ints[6], ints[7], ints[8])
    kernel = table[0]
    if kernel == 0:
        rows(a[0], b[0], c[0], stride, dilation, pad, ints[9] != 0, worker, workers)
    elif kernel == 1:
        weight_grad(a[0], b[0], c, stride, dilation, pad, worker, workers)
    elif kernel == 2:
        plane_forward(a[0], b[0], c[0], dilation, pad, worker, workers)
    else:
        plane_weight_grad(a[0], b[0], c[0, 0, 0], (ints[9], ints[10], ints[11]), dilation, pad, worker, workers)


@numba.njit(**_OPTIONS)
def share(table, worker, workers):
    """``worker``'s share of the kernel call that ``table`` describes (without OpenMP, the runtime calls it)."""
    if table[1] == 4:
        _share(table, np.float32, worker, workers)
    else:
        _share(table, np.float64, worker, workers)


if runtime.OPENMP:
    _thread = types.ExternalFunction("omp_get_thread_num", types.intc())
    _threads = types.ExternalFunction("omp_get_num_threads", types.intc())

    @numba.cfunc(types.void(types.voidptr), cache=True, nogil=True)
    def team_entry(table_address):
        """Each thread of PyTorch's OpenMP team: its share of the kernel the table describes."""
        share(numba.carray(table_address, TABLE_FIELDS, np.int64), np.int64(_thread()), np.int64(_threads()))
