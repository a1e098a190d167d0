// groupconv's direct-convolution kernels, written once with ATen's Vectorized<T> and
// compiled once per instruction set (isa_<n>_<ISA>.cpp; setup.py gives each its flags and
// CPU_CAPABILITY), so every copy lives in its own namespace and direct.cpp picks one at run time.
//
// Legend: N batch, G groups, Cg/Og input/output channels per group, (D, H, W) spatial,
// K kernel taps, V SIMD lanes. "dst" is what a kernel writes, "src" the activation it reads.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace groupconv_native {
namespace CPU_CAPABILITY {

using at::vec::Vectorized;

// An accumulator's type: the ISA's own vector, since GCC keeps an array of those in registers but spills
// an array of Vectorized<T> to the stack; Vectorized<T> converts to and from it.
template <typename T>
struct Acc {
  using type = Vectorized<T>;
};
#if defined(CPU_CAPABILITY_AVX512)
template <>
struct Acc<float> {
  using type = __m512;
};
template <>
struct Acc<double> {
  using type = __m512d;
};
#elif defined(CPU_CAPABILITY_AVX2)
template <>
struct Acc<float> {
  using type = __m256;
};
template <>
struct Acc<double> {
  using type = __m256d;
};
#endif
template <typename T>
using AccT = typename Acc<T>::type;

// f(0), ..., f(N - 1) with compile-time indices: arrays of accumulators indexed by them stay in registers
// (a loop, even one the compiler unrolls, leaves them on the stack).
template <typename F, int... Is>
inline __attribute__((always_inline)) void unroll_each(F&& f, std::integer_sequence<int, Is...>) {
  (f(std::integral_constant<int, Is>{}), ...);
}
template <int N, typename F>
inline __attribute__((always_inline)) void unroll(F&& f) {
  unroll_each(f, std::make_integer_sequence<int, N>{});
}

// f(std::integral_constant<int, n>) for a runtime n in [1, N]: a block's exact size as a compile-time constant.
template <int N, typename F>
inline void with_count(int64_t n, F&& f) {
  if constexpr (N > 1) {
    if (n < N) return with_count<N - 1>(n, f);
  }
  f(std::integral_constant<int, N>{});
}

// Accumulators a register file holds with room for the operands: 32 vector registers on AVX-512, 16 otherwise.
constexpr int MAX_ACC = sizeof(Vectorized<float>) == 64 ? 16 : 8;

// ---- lane permutation: lane l of a result takes lane idx[l] of one loaded vector ----------------
template <typename T>
struct Permute {
  static constexpr int V = Vectorized<T>::size();
#if defined(CPU_CAPABILITY_AVX512)
  __m512i idx;
  void set(const int32_t* lanes) {
    alignas(64) int64_t wide[8];
    alignas(64) int32_t narrow[16];
    for (int l = 0; l < V; ++l) (sizeof(T) == 4 ? narrow[l] = lanes[l] : wide[l] = lanes[l]);
    idx = sizeof(T) == 4 ? _mm512_load_si512(narrow) : _mm512_load_si512(wide);
  }
  Vectorized<T> operator()(const Vectorized<T>& v) const {
    if constexpr (sizeof(T) == 4) return _mm512_permutexvar_ps(idx, v);
    else return _mm512_permutexvar_pd(idx, v);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  __m256i idx;
  void set(const int32_t* lanes) {
    alignas(32) int32_t l32[8];
    for (int l = 0; l < V; ++l) {
      if constexpr (sizeof(T) == 4) l32[l] = lanes[l];
      else l32[2 * l] = 2 * lanes[l], l32[2 * l + 1] = 2 * lanes[l] + 1;  // a double is two floats
    }
    idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(l32));
  }
  Vectorized<T> operator()(const Vectorized<T>& v) const {
    if constexpr (sizeof(T) == 4) return _mm256_permutevar8x32_ps(v, idx);
    else return _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), idx));
  }
#else
  int32_t idx[V];
  void set(const int32_t* lanes) { std::memcpy(idx, lanes, sizeof(idx)); }
  Vectorized<T> operator()(const Vectorized<T>& v) const {
    T in[V], out[V];
    v.store(in);
    for (int l = 0; l < V; ++l) out[l] = in[idx[l]];
    return Vectorized<T>::loadu(out);
  }
#endif
};

// ---- channels-last: which src channel each dst lane reads ---------------------------------------
// dst channel d belongs to group d / Dg and reads src channel (d / Dg) * Sg + i, i < Sg.
// ROTATE<R>: groups of R = Dg = Sg channels tile the lanes. Rotation s (lane l reads lane
// l - l % R + (l + s) % R of its group) of the sum over taps of src * w_s equals the sum of the
// rotated src * rotated w_s, so each pixel accumulates R sums of plain FMAs and pays R - 1 lane
// permutes once at the end, where PERMUTE pays R per tap.
enum Mode { IDENTITY, BROADCAST, PERMUTE, GATHER, ROTATE2, ROTATE4 };

template <int MODE>
constexpr int rotations = MODE == ROTATE2 ? 2 : MODE == ROTATE4 ? 4 : 0;

template <typename T>
struct ChannelMap {
  static constexpr int V = Vectorized<T>::size();
  int mode;
  int64_t blocks, Sg, Csrc;
  std::vector<int64_t> base, count, load;  // per dst block: first src channel, dst lanes, src lanes to load
  std::vector<int32_t> lanes;              // [block][i][V]: src channel - base (GATHER, PERMUTE)
  std::vector<Permute<T>> perm;            // [block][i]

  // ROTATE where cl_rotation says: the caller hands weights rotated (rotate_packed)
  ChannelMap(int64_t G, int64_t Dg, int64_t Sg_) : Sg(Sg_), Csrc(G * Sg_) {
    const int64_t Cdst = G * Dg;
    blocks = (Cdst + V - 1) / V;
    bool fits = true;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t d0 = b * V, n = std::min<int64_t>(V, Cdst - d0);
      const int64_t first = (d0 / Dg) * Sg, last = ((d0 + n - 1) / Dg) * Sg + Sg - 1;
      base.push_back(first);
      count.push_back(n);
      load.push_back(std::min<int64_t>(V, Csrc - first));
      fits = fits && last - first < V;
      for (int64_t i = 0; i < Sg; ++i)
        for (int64_t l = 0; l < V; ++l)
          lanes.push_back(static_cast<int32_t>(((d0 + std::min(l, n - 1)) / Dg) * Sg + i - first));
    }
    mode = (Dg == 1 && Sg == 1) ? IDENTITY : (Dg % V == 0) ? BROADCAST : fits ? PERMUTE : GATHER;
    if (const int64_t r = cl_rotation(Dg, Sg, V)) mode = r == 2 ? ROTATE2 : ROTATE4;
    if (mode == PERMUTE) {
      perm.resize(blocks * Sg);
      for (int64_t k = 0; k < blocks * Sg; ++k) perm[k].set(&lanes[k * V]);
    } else if (mode >= ROTATE2) {  // perm[s]: rotation s, the same in every block
      perm.resize(Sg);
      int32_t rot[V];
      for (int64_t s = 0; s < Sg; ++s) {
        for (int64_t l = 0; l < V; ++l) rot[l] = static_cast<int32_t>(rotated_lane(l, s, Sg));
        perm[s].set(rot);
      }
    }
  }
};

// The src operand of dst block b, channel i of the group, at one src pixel (its block's channels
// start at `px`); `loaded` is that pixel's block already loaded (IDENTITY, PERMUTE).
template <typename T, int MODE>
inline Vectorized<T> operand(const ChannelMap<T>& m, int64_t b, int64_t i, const T* px, const Vectorized<T>& loaded) {
  constexpr int V = Vectorized<T>::size();
  if constexpr (MODE == IDENTITY) return loaded;
  else if constexpr (MODE == BROADCAST) return Vectorized<T>(px[i]);
  else if constexpr (MODE == PERMUTE) return m.perm[b * m.Sg + i](loaded);
  else {
    T tmp[V];
    const int32_t* lanes = &m.lanes[(b * m.Sg + i) * V];
    for (int l = 0; l < V; ++l) tmp[l] = px[lanes[l]];
    return Vectorized<T>::loadu(tmp);
  }
}

template <typename T, int MODE>
inline Vectorized<T> load_block(const ChannelMap<T>& m, int64_t b, const T* px) {
  if constexpr (MODE == IDENTITY || MODE == PERMUTE) return Vectorized<T>::loadu(px, m.load[b]);
  else return Vectorized<T>(T(0));
}

struct RowTerm {  // one (kd, kh) whose src row exists: its first tap and the row's src pixel 0
  int64_t tap;
  int64_t src_offset;
};

// cl_pixels for ROTATE<R>: acc[p][s] sums src * rotated w_s over every tap; dst = sum of perm[s](acc[p][s]).
template <typename T, int R, int P>
inline void rotate_pixels(const ChannelMap<T>& m, int64_t b, const T* src, const T* wp, int64_t Cpad,
                          const RowTerm* rows, int64_t nrows, const int64_t* kw_idx, const int64_t* kw_off, int64_t nkw,
                          const int64_t* first, T* dst, int64_t dst_step) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t d0 = b * V, C = m.Csrc, n = m.count[b];
  AccT<T> acc[P][R];
  unroll<P>([&](auto p) __attribute__((always_inline)) {
    unroll<R>([&](auto s) __attribute__((always_inline)) { acc[p][s] = Vectorized<T>(T(0)); });
  });
  for (int64_t r = 0; r < nrows; ++r) {
    const T* row = src + rows[r].src_offset + d0;
    for (int64_t q = 0; q < nkw; ++q) {
      const T* wt = wp + (rows[r].tap + kw_idx[q]) * R * Cpad + d0;
      const T* col = row + kw_off[q] * C;
      AccT<T> wv[R];
      unroll<R>([&](auto s) __attribute__((always_inline)) { wv[s] = Vectorized<T>::loadu(wt + s * Cpad); });
      unroll<P>([&](auto p) __attribute__((always_inline)) {
        const Vectorized<T> xv = Vectorized<T>::loadu(col + first[p] * C, n);
        unroll<R>([&](auto s) __attribute__((always_inline)) {
          acc[p][s] = at::vec::fmadd(xv, Vectorized<T>(wv[s]), Vectorized<T>(acc[p][s]));
        });
      });
    }
  }
  unroll<P>([&](auto p) __attribute__((always_inline)) {
    Vectorized<T> out = acc[p][0];
    unroll<R - 1>([&](auto s) __attribute__((always_inline)) { out = out + m.perm[s + 1](Vectorized<T>(acc[p][s + 1])); });
    out.store(dst + p * dst_step + d0, n);
  });
}

// P dst pixels of one channel block: acc[p] = sum over rows, the kw listed and i of
// operand(src pixel first[p] + kw_off[q]) * w_packed[tap][i][block].
template <typename T, int MODE, int P>
inline void cl_pixels(const ChannelMap<T>& m, int64_t b, const T* src, const T* wp, int64_t Cpad, int64_t KW,
                      const RowTerm* rows, int64_t nrows, const int64_t* kw_idx, const int64_t* kw_off, int64_t nkw,
                      const int64_t* first, T* dst, int64_t dst_step) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t d0 = b * V, base = m.base[b], K = m.Sg, Csrc = m.Csrc;
  AccT<T> acc[P];
  for (int p = 0; p < P; ++p) acc[p] = Vectorized<T>(T(0));
  for (int64_t r = 0; r < nrows; ++r) {
    const T* row = src + rows[r].src_offset;
    for (int64_t q = 0; q < nkw; ++q) {
      const T* wt = wp + ((rows[r].tap + kw_idx[q]) * K) * Cpad + d0;
      const T* px[P];
      Vectorized<T> xv[P];
      for (int p = 0; p < P; ++p) {
        px[p] = row + (first[p] + kw_off[q]) * Csrc + base;
        xv[p] = load_block<T, MODE>(m, b, px[p]);
      }
      for (int64_t i = 0; i < K; ++i) {
        const Vectorized<T> wv = Vectorized<T>::loadu(wt + i * Cpad);
        for (int p = 0; p < P; ++p) acc[p] = at::vec::fmadd(operand<T, MODE>(m, b, i, px[p], xv[p]), wv, Vectorized<T>(acc[p]));
      }
    }
  }
  (void)KW;
  for (int p = 0; p < P; ++p) Vectorized<T>(acc[p]).store(dst + p * dst_step + d0, m.count[b]);
}

template <typename T, int MODE, int P>
inline void block_pixels(const ChannelMap<T>& m, int64_t b, const T* src, const T* wp, int64_t Cpad, int64_t KW,
                         const RowTerm* rows, int64_t nrows, const int64_t* kw_idx, const int64_t* kw_off, int64_t nkw,
                         const int64_t* first, T* dst, int64_t dst_step) {
  if constexpr (rotations<MODE> > 0)
    rotate_pixels<T, rotations<MODE>, P>(m, b, src, wp, Cpad, rows, nrows, kw_idx, kw_off, nkw, first, dst, dst_step);
  else
    cl_pixels<T, MODE, P>(m, b, src, wp, Cpad, KW, rows, nrows, kw_idx, kw_off, nkw, first, dst, dst_step);
}

// Pixels per register block: ROTATE keeps R accumulators per pixel.
template <int MODE>
constexpr int block_width = rotations<MODE> > 0 ? std::max(1, MAX_ACC / rotations<MODE>) : 4;

// The kernel columns of a shared-load kernel's KW taps, first, first + step, ... (a strided input gradient's
// phase takes every stride-th one), and how far apart its dst pixels lie.
struct SharedTaps {
  int64_t first, step, dst_step;
};

// How many pixels ahead a depthwise shared-load kernel prefetches its src rows: at one FMA per loaded vector and
// tap, it would otherwise wait on memory (docs/design.md, "Kernels").
constexpr int SHARED_PREFETCH_PIXELS = 16;

// Channels-last, unit dilation along W, one full channel block of IDENTITY (R = 1: depthwise) or ROTATE<R>:
// P dst pixels, pixel p reading src columns first + p * S + kw, those in [0, Wsrc) (the others are padding).
// Each src pixel is loaded once per row for every (pixel, tap) pair that reads it; REV (the input gradient)
// takes the taps right to left.
template <typename T, int KW, int S, int P, int R, bool REV>
inline void shared_pixels(const ChannelMap<T>& m, const T* src, const T* wp, int64_t Cpad, const RowTerm* rows,
                          int64_t nrows, int64_t C, int64_t first, int64_t Wsrc, int64_t d0, const SharedTaps& taps,
                          T* dst) {
  const int64_t j_lo = -first, j_hi = Wsrc - first;  // the columns j of this call inside the row
  AccT<T> acc[P][R];
  unroll<P>([&](auto p) __attribute__((always_inline)) {
    unroll<R>([&](auto s) __attribute__((always_inline)) { acc[p][s] = Vectorized<T>(T(0)); });
  });
  for (int64_t r = 0; r < nrows; ++r) {
    const T* row = src + rows[r].src_offset + first * C + d0;
    if constexpr (R == 1)  // depthwise: the S * P src pixels the next call adds, SHARED_PREFETCH_PIXELS further on
      unroll<S * P>([&](auto j) __attribute__((always_inline)) {
        __builtin_prefetch(row + (S * (P - 1) + KW + SHARED_PREFETCH_PIXELS + decltype(j)::value) * C);
      });
    const T* wt = wp + (rows[r].tap + taps.first) * R * Cpad + d0;
    AccT<T> wv[KW][R];
    unroll<KW>([&](auto kw) __attribute__((always_inline)) {
      unroll<R>([&](auto s) __attribute__((always_inline)) {
        wv[kw][s] = Vectorized<T>::loadu(wt + ((REV ? KW - 1 - kw : kw) * taps.step * R + s) * Cpad);
      });
    });
    unroll<S*(P - 1) + KW>([&](auto j) __attribute__((always_inline)) {
      if (j < j_lo || j >= j_hi) return;
      const Vectorized<T> xv = Vectorized<T>::loadu(row + j * C);
      unroll<KW>([&](auto kw) __attribute__((always_inline)) {
        constexpr int d = decltype(j)::value - decltype(kw)::value;  // S * pixel when this pair meets
        if constexpr (d >= 0 && d % S == 0 && d / S < P)
          unroll<R>([&](auto s) __attribute__((always_inline)) {
            acc[d / S][s] = at::vec::fmadd(xv, Vectorized<T>(wv[kw][s]), Vectorized<T>(acc[d / S][s]));
          });
      });
    });
  }
  unroll<P>([&](auto p) __attribute__((always_inline)) {
    Vectorized<T> out = acc[p][0];
    unroll<R - 1>([&](auto s) __attribute__((always_inline)) { out = out + m.perm[s + 1](Vectorized<T>(acc[p][s + 1])); });
    out.store(dst + p * taps.dst_step + d0);
  });
}

// The pixels of [w, end) from dst pixel w on that shared_pixels takes in one call (dst pixel w reads src
// column origin + w * S at its first tap), or 0 where it takes none: KW == 0 is no shared-load kernel.
template <typename T, int MODE, int KW, int S, bool REV>
inline int64_t shared_block(const ChannelMap<T>& m, int64_t b, int64_t w, const T* src, const T* wp, int64_t Cpad,
                            const RowTerm* rows, int64_t nrows, int64_t C, int64_t end, int64_t origin, int64_t Wsrc,
                            const SharedTaps& taps, T* dst_row) {
  if constexpr (KW == 0) {
    return 0;
  } else {
    constexpr int V = Vectorized<T>::size(), R = std::max(1, rotations<MODE>), P = MAX_ACC / std::max(2, R);
    if (m.count[b] != V) return 0;
    int64_t taken = 0;
    auto take = [&](auto n) {
      constexpr int Q = decltype(n)::value;
      if (taken != 0 || w + Q > end) return;
      shared_pixels<T, KW, S, Q, R, REV>(m, src, wp, Cpad, rows, nrows, C, origin + w * S, Wsrc, b * V, taps,
                                         dst_row + w * taps.dst_step);
      taken = Q;
    };
    take(std::integral_constant<int, P>{});
    take(std::integral_constant<int, std::max(1, P / 2)>{});
    take(std::integral_constant<int, std::max(1, P / 4)>{});
    take(std::integral_constant<int, 1>{});
    return taken;
  }
}

// f(KW, S) as compile-time constants for the depthwise shapes shared_pixels is built for; false for the others.
template <typename F>
inline bool with_depthwise_shape(int64_t KW, int64_t S, F&& f) {
  using std::integral_constant;
  if (S != 1 && S != 2) return false;  // the key below is unique for S < 4 only
  switch (KW * 4 + S) {
    case 3 * 4 + 1: f(integral_constant<int, 3>{}, integral_constant<int, 1>{}); return true;
    case 5 * 4 + 1: f(integral_constant<int, 5>{}, integral_constant<int, 1>{}); return true;
    case 7 * 4 + 1: f(integral_constant<int, 7>{}, integral_constant<int, 1>{}); return true;
    case 3 * 4 + 2: f(integral_constant<int, 3>{}, integral_constant<int, 2>{}); return true;
    case 5 * 4 + 2: f(integral_constant<int, 5>{}, integral_constant<int, 2>{}); return true;
    default: return false;
  }
}

// f(MODE, KW, S) as compile-time constants where shared_pixels is built for the layer: every depthwise
// shape above, and 3 wide at stride 1 or 2 under a rotation (ResNeXt's and RegNet's grouped layers).
template <typename F>
inline bool with_shared_shape(int mode, int64_t KW, int64_t S, F&& f) {
  using std::integral_constant;
  if (mode == IDENTITY)
    return with_depthwise_shape(KW, S, [&](auto kw, auto s) { f(integral_constant<int, IDENTITY>{}, kw, s); });
  auto three_wide = [&](auto rotate) {
    if (KW != 3 || S > 2) return false;
    if (S == 1) f(rotate, integral_constant<int, 3>{}, integral_constant<int, 1>{});
    else f(rotate, integral_constant<int, 3>{}, integral_constant<int, 2>{});
    return true;
  };
  if (mode == ROTATE2) return three_wide(integral_constant<int, ROTATE2>{});
  if (mode == ROTATE4) return three_wide(integral_constant<int, ROTATE4>{});
  return false;
}

// The taps a channels-last row of dst pixels reads: dst pixel w reads, at tap j (kernel column idx[j]),
// src column origin + w * step + off[j] when that lies in [0, Wsrc).
struct RowTaps {
  std::vector<int64_t> idx, off;
  int64_t origin, step, Wsrc;
  // full[w]: every tap of dst pixel w inside the src row (true with no taps)
  std::vector<char> full(int64_t Wdst) const {
    const int64_t lo = off.empty() ? 0 : *std::min_element(off.begin(), off.end());
    const int64_t hi = off.empty() ? 0 : *std::max_element(off.begin(), off.end());
    std::vector<char> f(Wdst);
    for (int64_t w = 0; w < Wdst; ++w) f[w] = origin + w * step + lo >= 0 && origin + w * step + hi < Wsrc;
    return f;
  }
};

// f(kd, kh, src row) for each (kd, kh) whose src row exists under output row t = (n, od, oh), the src row
// counted in rows of the whole input: (n * ID + id) * IH + ih.
template <typename F>
inline void for_each_src_row(const Geometry& g, int64_t t, F&& f) {
  const int64_t OD = g.out[0], OH = g.out[1], ID = g.in[0], IH = g.in[1];
  const int64_t n = t / (OD * OH), od = t / OH % OD, oh = t % OH;
  for (int64_t kd = 0; kd < g.k[0]; ++kd) {
    const int64_t id = od * g.stride[0] + kd * g.dil[0] - g.pad[0];
    if (id < 0 || id >= ID) continue;
    for (int64_t kh = 0; kh < g.k[1]; ++kh) {
      const int64_t ih = oh * g.stride[1] + kh * g.dil[1] - g.pad[1];
      if (ih >= 0 && ih < IH) f(kd, kh, (n * ID + id) * IH + ih);
    }
  }
}

// One dst row of a band: the src rows it reads and where its pixel 0 goes.
template <typename T>
struct BandRow {
  const RowTerm* rows;
  int64_t nrows;
  T* dst;
};

// A band of channels-last dst rows that read the same src rows' taps, Wdst pixels each, pixel w at
// dst + w * pixel_stride. `fast(row, b, w, end)` runs the pixels of [w, end) from w on that a
// specialised kernel takes, and says how many.
template <typename T, int MODE, typename Fast>
void cl_band(const ChannelMap<T>& m, const T* src_row_base, const T* wp, int64_t Cpad, int64_t KW, const RowTaps& taps,
             const BandRow<T>* band, int64_t nband, int64_t Wdst, int64_t pixel_stride, Fast fast) {
  constexpr int P = block_width<MODE>, HALF = std::max(1, P / 2), QUARTER = std::max(1, P / 4);
  const int64_t ntaps = static_cast<int64_t>(taps.idx.size());
  const std::vector<char> full = taps.full(Wdst);
  std::vector<int64_t> kw_idx(ntaps), kw_off(ntaps);
  // Q full pixels from w (full[] is contiguous runs: its ends suffice), blocked if they are
  auto blocked = [&](auto n, const BandRow<T>& r, int64_t b, int64_t w, int64_t end) {
    constexpr int Q = decltype(n)::value;
    if (Q < 2 || w + Q > end || !full[w] || !full[w + Q - 1]) return false;
    int64_t first[Q];
    for (int p = 0; p < Q; ++p) first[p] = taps.origin + (w + p) * taps.step;
    block_pixels<T, MODE, Q>(m, b, src_row_base, wp, Cpad, KW, r.rows, r.nrows, taps.idx.data(), taps.off.data(), ntaps,
                             first, r.dst + w * pixel_stride, pixel_stride);
    return true;
  };
  auto span = [&](const BandRow<T>& r, int64_t b, int64_t w, int64_t end) {
    while (w < end) {
      if (const int64_t done = fast(r, b, w, end)) {
        w += done;
      } else if (blocked(std::integral_constant<int, P>{}, r, b, w, end)) {
        w += P;
      } else if (blocked(std::integral_constant<int, HALF>{}, r, b, w, end)) {
        w += HALF;
      } else if (blocked(std::integral_constant<int, QUARTER>{}, r, b, w, end)) {  // a run's last few pixels
        w += QUARTER;
      } else {
        int64_t n = 0;
        for (int64_t j = 0; j < ntaps; ++j) {
          const int64_t c = taps.origin + w * taps.step + taps.off[j];
          if (c >= 0 && c < taps.Wsrc) kw_idx[n] = taps.idx[j], kw_off[n] = c, ++n;
        }
        const int64_t zero = 0;
        block_pixels<T, MODE, 1>(m, b, src_row_base, wp, Cpad, KW, r.rows, r.nrows, kw_idx.data(), kw_off.data(), n,
                                 &zero, r.dst + w * pixel_stride, pixel_stride);
        ++w;
      }
    }
  };
  // Spans of pixels outer. Grouped: then the band's rows, then channel blocks, so consecutive blocks read the
  // next lines of the same pixels, which the hardware prefetchers follow (a block alone steps a pixel apart).
  // Depthwise: blocks, then rows, so one block's src pixels stay in L1 from one dst row to the next, the order
  // its prefetch (shared_pixels) is built for. Measured: docs/design.md.
  constexpr int64_t SPAN = 32;
  const int64_t lead = std::find(full.begin(), full.end(), char(1)) - full.begin();  // spans start there
  for (int64_t w0 = 0, w1; w0 < Wdst; w0 = w1) {
    w1 = std::min(Wdst, std::max(w0, lead) + SPAN);
    if constexpr (MODE == IDENTITY) {
      for (int64_t b = 0; b < m.blocks; ++b)
        for (int64_t r = 0; r < nband; ++r) span(band[r], b, w0, w1);
    } else {
      for (int64_t r = 0; r < nband; ++r)
        for (int64_t b = 0; b < m.blocks; ++b) span(band[r], b, w0, w1);
    }
  }
}

// Consecutive tasks of one plane taken together as a band: few enough rows that a channel block's src
// rows fit in L1 (measured: docs/design.md).
constexpr int64_t CL_BAND_ROWS = 4;

// The end of the band of tasks that starts at `t`: at most CL_BAND_ROWS, all in the plane of `t`.
inline int64_t band_end(int64_t t, int64_t end, int64_t rows_per_plane) {
  return std::min({end, t + CL_BAND_ROWS, (t / rows_per_plane + 1) * rows_per_plane});
}

// The taps of every column kw: src column origin + w * step + kw * dil.
inline RowTaps every_tap(int64_t KW, int64_t dil, int64_t origin, int64_t step, int64_t Wsrc) {
  RowTaps taps{{}, {}, origin, step, Wsrc};
  for (int64_t kw = 0; kw < KW; ++kw) taps.idx.push_back(kw), taps.off.push_back(kw * dil);
  return taps;
}

// Forward, channels-last: a task is an output row (n, od, oh). w_packed: [K taps][Cg][O padded to V].
template <typename T, int MODE, int SHARED_KW = 0, int SHARED_S = 0>
void forward_cl_mode(const Geometry& g, const ChannelMap<T>& m, const T* x, const T* wp, T* y, int64_t begin,
                     int64_t end) {
  const int64_t O = g.O(), Cpad = padded_channels<T>(m.blocks * Vectorized<T>::size());
  const int64_t KD = g.k[0], KH = g.k[1], KW = g.k[2];
  const int64_t OH = g.out[1], OW = g.out[2], IW = g.in[2];
  const RowTaps taps = every_tap(KW, g.dil[2], -g.pad[2], g.stride[2], IW);
  std::vector<RowTerm> rows(CL_BAND_ROWS * KD * KH);
  BandRow<T> band[CL_BAND_ROWS];
  auto fast = [&](const BandRow<T>& r, int64_t b, int64_t w, int64_t span_end) {
    return shared_block<T, MODE, SHARED_KW, SHARED_S, false>(m, b, w, x, wp, Cpad, r.rows, r.nrows, O, span_end,
                                                             -g.pad[2], IW, {0, 1, O}, r.dst);
  };
  for (int64_t t0 = begin, t1; t0 < end; t0 = t1) {
    t1 = band_end(t0, end, OH);
    for (int64_t t = t0; t < t1; ++t) {
      RowTerm* terms = &rows[(t - t0) * KD * KH];
      int64_t nrows = 0;
      for_each_src_row(g, t, [&](int64_t kd, int64_t kh, int64_t src_row) {
        terms[nrows++] = {(kd * KH + kh) * KW, src_row * IW * g.C()};
      });
      band[t - t0] = {terms, nrows, y + t * OW * O};
    }
    cl_band<T, MODE>(m, x, wp, Cpad, KW, taps, band, t1 - t0, OW, O, fast);
  }
}

// f(N) as a compile-time constant for the tap counts of an input gradient's phase that shared_pixels is built
// for under MODE: a 3x3, 5x5 or 7x7 kernel's at stride 1 and 2 depthwise, a 3x3 kernel's under a rotation.
template <int MODE, typename F>
inline bool with_phase_taps(int64_t n, F&& f) {
  using std::integral_constant;
  constexpr bool depthwise = MODE == IDENTITY;
  switch (n) {
    case 1: return f(integral_constant<int, 1>{}), true;
    case 2: return f(integral_constant<int, 2>{}), true;
    case 3: return f(integral_constant<int, 3>{}), true;
    case 4: if constexpr (depthwise) return f(integral_constant<int, 4>{}), true; else return false;
    case 5: if constexpr (depthwise) return f(integral_constant<int, 5>{}), true; else return false;
    case 7: if constexpr (depthwise) return f(integral_constant<int, 7>{}), true; else return false;
    default: return false;
  }
}

// Input gradient, channels-last: a task is an input row (n, id, ih). w_packed: [K][Og][C padded]. SHARED: unit
// dilation along W and IDENTITY or ROTATE<R>, so a phase whose tap count with_phase_taps takes runs shared_pixels.
template <typename T, int MODE, bool SHARED = false>
void input_grad_cl_mode(const Geometry& g, const ChannelMap<T>& m, const T* gy, const T* wp, T* gx, int64_t begin,
                        int64_t end) {
  const int64_t C = g.C(), O = g.O(), Cpad = padded_channels<T>(m.blocks * Vectorized<T>::size());
  const int64_t KD = g.k[0], KH = g.k[1], KW = g.k[2];
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2], ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const int64_t sw = std::min(g.stride[2], IW);  // a stride past the row leaves each pixel its own phase
  // Pixel iw reads output column (iw + pad - kw * dil) / stride where that divides: the pixels of phase
  // ph = iw % stride, iw = ph + q * stride, share their taps and read column q + (ph + pad - kw * dil) / stride.
  std::vector<RowTaps> phases;
  for (int64_t ph = 0; ph < sw; ++ph) {
    RowTaps taps{{}, {}, 0, 1, OW};
    for (int64_t kw = 0; kw < KW; ++kw) {
      const int64_t num = ph + g.pad[2] - kw * g.dil[2];
      if (((num % g.stride[2]) + g.stride[2]) % g.stride[2] == 0) taps.idx.push_back(kw), taps.off.push_back(num / g.stride[2]);
    }
    phases.push_back(taps);
  }
  std::vector<RowTerm> rows(CL_BAND_ROWS * KD * KH);
  BandRow<T> band[CL_BAND_ROWS], phase_band[CL_BAND_ROWS];
  auto none = [](const BandRow<T>&, int64_t, int64_t, int64_t) { return int64_t(0); };
  for (int64_t t0 = begin, t1; t0 < end; t0 = t1) {
    t1 = band_end(t0, end, IH);
    int64_t nband = 0;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (ID * IH), id = t / IH % ID, ih = t % IH;
      RowTerm* terms = &rows[(t - t0) * KD * KH];
      int64_t nrows = 0;
      for (int64_t kd = 0; kd < KD; ++kd) {
        const int64_t num_d = id + g.pad[0] - kd * g.dil[0];
        if (num_d < 0 || num_d % g.stride[0] != 0 || num_d / g.stride[0] >= OD) continue;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t num_h = ih + g.pad[1] - kh * g.dil[1];
          if (num_h < 0 || num_h % g.stride[1] != 0 || num_h / g.stride[1] >= OH) continue;
          terms[nrows++] = {(kd * KH + kh) * KW, ((n * OD + num_d / g.stride[0]) * OH + num_h / g.stride[1]) * OW * O};
        }
      }
      T* dst = gx + t * IW * C;
      if (nrows == 0) std::memset(dst, 0, sizeof(T) * IW * C);
      else band[nband++] = {terms, nrows, dst};
    }
    for (int64_t ph = 0; ph < sw; ++ph) {
      for (int64_t r = 0; r < nband; ++r) phase_band[r] = {band[r].rows, band[r].nrows, band[r].dst + ph * C};
      const RowTaps& taps = phases[ph];
      auto run = [&](auto fast) {
        cl_band<T, MODE>(m, gy, wp, Cpad, KW, taps, phase_band, nband, (IW - ph + sw - 1) / sw, sw * C, fast);
      };
      // the phase's taps are kernel columns idx[0] + j * stride, reading output columns q + off[j] (off[j] falls by
      // one as j rises): taken right to left, dst pixel q's first reads column q + off.back()
      auto shared = [&](auto n) {
        const SharedTaps steps{taps.idx.front(), g.stride[2], sw * C};
        run([&](const BandRow<T>& r, int64_t b, int64_t w, int64_t span_end) {
          return shared_block<T, MODE, decltype(n)::value, 1, true>(m, b, w, gy, wp, Cpad, r.rows, r.nrows, C, span_end,
                                                                     taps.off.back(), OW, steps, r.dst);
        });
      };
      if constexpr (SHARED) {
        if (with_phase_taps<MODE>(static_cast<int64_t>(taps.idx.size()), shared)) continue;
      }
      run(none);
    }
  }
}


// Kernel column kw of a channels-last row: output column ow reads src column ow * stride + off, inside the src
// row for ow in [lo, hi).
struct SrcColumns {
  int64_t off, lo, hi;
};
inline SrcColumns src_columns(const Geometry& g, int64_t kw) {
  const int64_t off = kw * g.dil[2] - g.pad[2], s = g.stride[2], IW = g.in[2];
  const int64_t lo = off >= 0 ? 0 : (-off + s - 1) / s;
  const int64_t hi = std::min<int64_t>(g.out[2], IW - 1 - off < 0 ? 0 : (IW - 1 - off) / s + 1);
  return {off, lo, hi};
}

struct TapCols {  // one tap of a channels-last weight-gradient row: src row, column offset, output columns
  const void* x_row;  // the src row's first pixel
  int64_t off;        // src column of output column ow: ow * stride + off
  int64_t lo, hi;     // output columns whose src column lies in the row
  int64_t tap;
};

// wg_cl_block for ROTATE<R>: acc[j][s] sums src * (grad_y rotated by -s) over output columns [lo, hi), so
// grad_y pays R - 1 permutes per column for all J taps; row s of `rotated` (see weight_grad_cl) gets
// perm[s](acc[j][s]), whose lane d is the gradient of w[d][(d + s) % R].
template <typename T, int R, int J>
inline void wg_rotate_block(const ChannelMap<T>& m, int64_t b, const TapCols* taps, int64_t nj, const T* gy_row,
                            int64_t O, int64_t C, int64_t s, int64_t lo, int64_t hi, T* rotated, int64_t Opad) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t d0 = b * V, cnt = m.count[b];
  AccT<T> acc[J][R];
  const T* rows[J];
  unroll<J>([&](auto j) __attribute__((always_inline)) {
    rows[j] = j < nj ? static_cast<const T*>(taps[j].x_row) + taps[j].off * C + d0 : nullptr;
    unroll<R>([&](auto r) __attribute__((always_inline)) { acc[j][r] = Vectorized<T>(T(0)); });
  });
  for (int64_t ow = lo; ow < hi; ++ow) {
    const Vectorized<T> gv = Vectorized<T>::loadu(gy_row + ow * O + d0, cnt);
    AccT<T> gr[R];
    unroll<R>([&](auto r) __attribute__((always_inline)) { gr[r] = r == 0 ? gv : m.perm[R - r](gv); });
    unroll<J>([&](auto j) __attribute__((always_inline)) {
      if (j >= nj) return;
      const Vectorized<T> xv = Vectorized<T>::loadu(rows[j] + ow * s * C, cnt);
      unroll<R>([&](auto r) __attribute__((always_inline)) {
        acc[j][r] = at::vec::fmadd(xv, Vectorized<T>(gr[r]), Vectorized<T>(acc[j][r]));
      });
    });
  }
  unroll<J>([&](auto j) __attribute__((always_inline)) {
    if (j >= nj) return;
    unroll<R>([&](auto r) __attribute__((always_inline)) {
      T* out = rotated + (taps[j].tap * R + r) * Opad + d0;
      (Vectorized<T>::loadu(out) + m.perm[r](Vectorized<T>(acc[j][r]))).store(out);
    });
  });
}

// Up to J taps x I channels of the group (nj, ni of them) for one dst channel block, in registers over
// output columns [lo, hi): each grad_y vector is loaded once and used nj * ni times.
template <typename T, int MODE, int J, int I>
inline void wg_cl_block(const ChannelMap<T>& m, int64_t b, int64_t i0, int64_t ni, const TapCols* taps, int64_t nj,
                        const T* gy_row, int64_t O, int64_t C, int64_t s, int64_t lo, int64_t hi, T* partial,
                        int64_t Opad) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t d0 = b * V, cnt = m.count[b], base = m.base[b], Cg = m.Sg;
  AccT<T> acc[J][I];
  const T* rows[J];
  unroll<J>([&](auto j) __attribute__((always_inline)) {
    rows[j] = j < nj ? static_cast<const T*>(taps[j].x_row) + taps[j].off * C + base : nullptr;
    unroll<I>([&](auto i) __attribute__((always_inline)) { acc[j][i] = Vectorized<T>(T(0)); });
  });
  for (int64_t ow = lo; ow < hi; ++ow) {
    const Vectorized<T> gv = Vectorized<T>::loadu(gy_row + ow * O + d0, cnt);
    unroll<J>([&](auto j) __attribute__((always_inline)) {
      if (j >= nj) return;
      const T* px = rows[j] + ow * s * C;
      const Vectorized<T> xv = load_block<T, MODE>(m, b, px);
      unroll<I>([&](auto i) __attribute__((always_inline)) {
        if (i < ni) acc[j][i] = at::vec::fmadd(operand<T, MODE>(m, b, i0 + i, px, xv), gv, Vectorized<T>(acc[j][i]));
      });
    });
  }
  unroll<J>([&](auto j) __attribute__((always_inline)) {
    unroll<I>([&](auto i) __attribute__((always_inline)) {
      if (j >= nj || i >= ni) return;
      T* out = partial + (taps[j].tap * Cg + i0 + i) * Opad + d0;
      (Vectorized<T>::loadu(out) + Vectorized<T>(acc[j][i])).store(out);
    });
  });
}

// Every tap of one output row, channels i0.. in blocks of I: J taps share their common columns; each
// tap's border columns outside that run alone.
template <typename T, int MODE, int I>
void wg_cl_taps(const ChannelMap<T>& m, int64_t b, int64_t i0, int64_t ni, const TapCols* taps, int64_t ntaps,
                const T* gy_row, int64_t O, int64_t C, int64_t s, T* partial, int64_t Opad) {
  constexpr int J = MAX_ACC / I;
  for (int64_t t0 = 0; t0 < ntaps; t0 += J) {
    const int64_t nj = std::min<int64_t>(J, ntaps - t0);
    const TapCols* block = taps + t0;
    int64_t lo = block[0].lo, hi = block[0].hi;
    for (int64_t j = 1; j < nj; ++j) lo = std::max(lo, block[j].lo), hi = std::min(hi, block[j].hi);
    hi = std::max(lo, hi);
    auto run = [&](auto taps_in_block, const TapCols* t, int64_t n, int64_t from, int64_t to) {
      constexpr int Q = decltype(taps_in_block)::value;
      if constexpr (rotations<MODE> > 0)
        wg_rotate_block<T, rotations<MODE>, Q>(m, b, t, n, gy_row, O, C, s, from, to, partial, Opad);
      else
        wg_cl_block<T, MODE, Q, I>(m, b, i0, ni, t, n, gy_row, O, C, s, from, to, partial, Opad);
    };
    run(std::integral_constant<int, J>{}, block, nj, lo, hi);
    for (int64_t j = 0; j < nj; ++j) {
      const TapCols& t = block[j];
      run(std::integral_constant<int, 1>{}, &t, 1, t.lo, std::min(lo, t.hi));
      run(std::integral_constant<int, 1>{}, &t, 1, std::max(hi, t.lo), t.hi);
    }
  }
}

// Weight gradient, channels-last: a task is an output row (n, od, oh); partial: [K][Cg][O padded]. Lanes
// run across output channels; a block of (taps x channels of the group) accumulates in registers.
template <typename T, int MODE>
void weight_grad_cl_mode(const Geometry& g, const ChannelMap<T>& m, const T* x, const T* gy, T* partial,
                         int64_t begin, int64_t end) {
  const int64_t C = g.C(), O = g.O(), Cg = g.Cg, Opad = padded_channels<T>(O);
  const int64_t KH = g.k[1], KW = g.k[2], s = g.stride[2];
  const int64_t OW = g.out[2], IW = g.in[2];
  std::vector<TapCols> taps(g.taps());
  for (int64_t t = begin; t < end; ++t) {
    int64_t ntaps = 0;
    for_each_src_row(g, t, [&](int64_t kd, int64_t kh, int64_t src_row) {
      for (int64_t kw = 0; kw < KW; ++kw) {
        const SrcColumns cols = src_columns(g, kw);
        if (cols.lo < cols.hi)
          taps[ntaps++] = {x + src_row * IW * C, cols.off, cols.lo, cols.hi, (kd * KH + kh) * KW + kw};
      }
    });
    const T* gy_row = gy + t * OW * O;
    for (int64_t b = 0; b < m.blocks; ++b) {
      if constexpr (rotations<MODE> > 0) {
        wg_cl_taps<T, MODE, rotations<MODE>>(m, b, 0, Cg, taps.data(), ntaps, gy_row, O, C, s, partial, Opad);
      } else {
        int64_t i0 = 0;
        for (; i0 + 4 <= Cg; i0 += 4) wg_cl_taps<T, MODE, 4>(m, b, i0, 4, taps.data(), ntaps, gy_row, O, C, s, partial, Opad);
        const int64_t rest = Cg - i0;
        if (rest == 3) wg_cl_taps<T, MODE, 4>(m, b, i0, 3, taps.data(), ntaps, gy_row, O, C, s, partial, Opad);
        if (rest == 2) wg_cl_taps<T, MODE, 2>(m, b, i0, 2, taps.data(), ntaps, gy_row, O, C, s, partial, Opad);
        if (rest == 1) wg_cl_taps<T, MODE, 1>(m, b, i0, 1, taps.data(), ntaps, gy_row, O, C, s, partial, Opad);
      }
    }
  }
}

// Depthwise weight gradient, channels-last, every tap of a 2-D kernel in registers: for one channel block,
// acc[tap] sums src * grad_y over every row of [begin, end) and every column of it, border columns included
// (each tap skips the columns whose src falls outside the row), so partial is read and written once per
// block, not once per row and tap, and no tap runs its border columns apart.
template <typename T, int KH, int KW>
void wg_depthwise_cl(const Geometry& g, const T* x, const T* gy, T* partial, int64_t begin, int64_t end) {
  constexpr int64_t V = Vectorized<T>::size();
  constexpr int K = KH * KW;
  const int64_t C = g.C(), OW = g.out[2], IW = g.in[2], s = g.stride[2], Opad = padded_channels<T>(C);
  SrcColumns cols[KW];
  int64_t inner_lo = 0, inner_hi = OW;  // the output columns every kw reads inside the src row
  for (int64_t kw = 0; kw < KW; ++kw) {
    cols[kw] = src_columns(g, kw);
    inner_lo = std::max(inner_lo, cols[kw].lo), inner_hi = std::min(inner_hi, cols[kw].hi);
  }
  inner_hi = std::max(inner_lo, inner_hi);
  for (int64_t d0 = 0; d0 < C; d0 += V) {
    const int64_t cnt = std::min<int64_t>(V, C - d0);
    AccT<T> acc[K];
    unroll<K>([&](auto j) __attribute__((always_inline)) { acc[j] = Vectorized<T>(T(0)); });
    for (int64_t t = begin; t < end; ++t) {
      const T* rows[KH] = {};  // each kh's src row at channel d0, or none (padding)
      for_each_src_row(g, t, [&](int64_t, int64_t kh, int64_t src_row) { rows[kh] = x + src_row * IW * C + d0; });
      const T* gy_row = gy + t * OW * C + d0;
      auto column = [&](int64_t ow, auto border) __attribute__((always_inline)) {
        const Vectorized<T> gv = Vectorized<T>::loadu(gy_row + ow * C, cnt);
        unroll<K>([&](auto j) __attribute__((always_inline)) {
          constexpr int kh = j / KW, kw = j % KW;
          if (rows[kh] == nullptr || (border && (ow < cols[kw].lo || ow >= cols[kw].hi))) return;
          const Vectorized<T> xv = Vectorized<T>::loadu(rows[kh] + (ow * s + cols[kw].off) * C, cnt);
          acc[j] = at::vec::fmadd(xv, gv, Vectorized<T>(acc[j]));
        });
      };
      for (int64_t ow = 0; ow < inner_lo; ++ow) column(ow, std::true_type{});
      for (int64_t ow = inner_lo; ow < inner_hi; ++ow) column(ow, std::false_type{});
      for (int64_t ow = inner_hi; ow < OW; ++ow) column(ow, std::true_type{});
    }
    unroll<K>([&](auto j) __attribute__((always_inline)) {
      T* out = partial + j * Opad + d0;
      (Vectorized<T>::loadu(out) + Vectorized<T>(acc[j])).store(out);
    });
  }
}

// 25 accumulators and their operands fit AVX-512's 32 vector registers, not the 16 of the others.
constexpr bool RESIDENT_25 = sizeof(Vectorized<float>) == 64;

// f(KH, KW) as compile-time constants for the depthwise kernels whose taps wg_depthwise_cl keeps in registers.
template <typename F>
inline bool with_resident_taps(int64_t KH, int64_t KW, F&& f) {
  if (KH == 3 && KW == 3) return f(std::integral_constant<int, 3>{}, std::integral_constant<int, 3>{}), true;
  if (KH == 5 && KW == 5 && RESIDENT_25)
    return f(std::integral_constant<int, 5>{}, std::integral_constant<int, 5>{}), true;
  return false;
}

#define GROUPCONV_BY_MODE(fn, map, ...)                                  \
  switch ((map).mode) {                                                  \
    case IDENTITY: fn<T, IDENTITY>(__VA_ARGS__); break;                  \
    case BROADCAST: fn<T, BROADCAST>(__VA_ARGS__); break;                \
    case PERMUTE: fn<T, PERMUTE>(__VA_ARGS__); break;                    \
    case ROTATE2: fn<T, ROTATE2>(__VA_ARGS__); break;                    \
    case ROTATE4: fn<T, ROTATE4>(__VA_ARGS__); break;                    \
    default: fn<T, GATHER>(__VA_ARGS__); break;                          \
  }

template <typename T>
void forward_cl(const Geometry& g, const T* x, const T* wp, T* y, int64_t begin, int64_t end) {
  const ChannelMap<T> m(g.G, g.Og, g.Cg);
  auto shared = [&](auto mode, auto kw, auto s) {
    forward_cl_mode<T, decltype(mode)::value, decltype(kw)::value, decltype(s)::value>(g, m, x, wp, y, begin, end);
  };
  if (g.dil[2] == 1 && with_shared_shape(m.mode, g.k[2], g.stride[2], shared)) return;
  GROUPCONV_BY_MODE(forward_cl_mode, m, g, m, x, wp, y, begin, end)
}

template <typename T>
void input_grad_cl(const Geometry& g, const T* gy, const T* wp, T* gx, int64_t begin, int64_t end) {
  const ChannelMap<T> m(g.G, g.Cg, g.Og);
  if (g.dil[2] == 1 && m.mode == IDENTITY) return input_grad_cl_mode<T, IDENTITY, true>(g, m, gy, wp, gx, begin, end);
  if (g.dil[2] == 1 && m.mode == ROTATE2) return input_grad_cl_mode<T, ROTATE2, true>(g, m, gy, wp, gx, begin, end);
  if (g.dil[2] == 1 && m.mode == ROTATE4) return input_grad_cl_mode<T, ROTATE4, true>(g, m, gy, wp, gx, begin, end);
  GROUPCONV_BY_MODE(input_grad_cl_mode, m, g, m, gy, wp, gx, begin, end)
}

template <typename T>
void weight_grad_cl(const Geometry& g, const T* x, const T* gy, T* partial, int64_t begin, int64_t end) {
  auto resident = [&](auto kh, auto kw) {
    wg_depthwise_cl<T, decltype(kh)::value, decltype(kw)::value>(g, x, gy, partial, begin, end);
  };
  if (g.Cg == 1 && g.Og == 1 && g.k[0] == 1 && with_resident_taps(g.k[1], g.k[2], resident)) return;
  const ChannelMap<T> m(g.G, g.Og, g.Cg);
  if (m.mode < ROTATE2) {
    GROUPCONV_BY_MODE(weight_grad_cl_mode, m, g, m, x, gy, partial, begin, end)
    return;
  }
  // ROTATE sums into rotated[K][s][Opad]; lane d of row s is the gradient of w[d][(d + s) % R]
  const int64_t K = g.taps(), R = g.Cg, Opad = padded_channels<T>(g.O());
  std::vector<T> rotated(K * R * Opad, T(0));
  GROUPCONV_BY_MODE(weight_grad_cl_mode, m, g, m, x, gy, rotated.data(), begin, end)
  for (int64_t t = 0; t < K; ++t)
    for (int64_t s = 0; s < R; ++s)
      for (int64_t d0 = 0; d0 < g.O(); d0 += R)
        for (int64_t j = 0; j < R; ++j)
          partial[(t * R + (j + s < R ? j + s : j + s - R)) * Opad + d0 + j] += rotated[(t * R + s) * Opad + d0 + j];
}

// ---- channels-first: SIMD lanes along a row -------------------------------------------------
// A src load for dst lanes [w0, w0 + n): lane l reads src column start + l * stride (the layer's stride
// along W); lanes whose src column falls outside [0, Wsrc) must add nothing (not 0 * w: w may be inf), so
// they are blended away.
template <typename T>
struct Span {
  int64_t start, lo, hi;  // src column of lane 0; lanes [lo, hi) are inside the row
};

template <typename T>
inline Span<T> span_of(int64_t w0, int64_t n, int64_t off, int64_t Wsrc, int64_t stride) {
  const int64_t start = w0 * stride + off;
  const int64_t lo = start >= 0 ? 0 : (-start + stride - 1) / stride;
  return {start, lo, start >= Wsrc ? 0 : std::min<int64_t>(n, (Wsrc - 1 - start) / stride + 1)};
}

template <typename T>
inline Vectorized<T> load_span(const T* row, const Span<T>& s) {
  constexpr int V = Vectorized<T>::size();
  if (s.lo == 0) return Vectorized<T>::loadu(row + s.start, s.hi);
  T tmp[V] = {};
  std::memcpy(tmp + s.lo, row + s.start + s.lo, sizeof(T) * (s.hi - s.lo));
  return Vectorized<T>::loadu(tmp);
}

// acc + x * w on lanes [lo, hi), acc elsewhere
template <typename T>
inline Vectorized<T> fma_span(const Vectorized<T>& x, const Vectorized<T>& w, const Vectorized<T>& acc, const Span<T>& s,
                              int64_t n) {
  const Vectorized<T> r = at::vec::fmadd(x, w, acc);
  if (s.lo == 0 && s.hi >= n) return r;
  const Vectorized<T> upto_hi = Vectorized<T>::set(acc, r, s.hi);  // lanes < hi from r
  return s.lo == 0 ? upto_hi : Vectorized<T>::set(upto_hi, acc, s.lo);
}

#if defined(CPU_CAPABILITY_AVX512)
// AVX-512 masks a load (masked-off lanes never fault) and an FMA (masked-off lanes keep acc): a
// row's borders cost what its interior does.
template <typename T>
using LaneMask = std::conditional_t<sizeof(T) == 4, __mmask16, __mmask8>;

template <typename T>
inline LaneMask<T> lanes_of(const Span<T>& s) {
  if (s.hi <= s.lo) return 0;
  return static_cast<LaneMask<T>>(((uint32_t(1) << s.hi) - 1) & ~((uint32_t(1) << s.lo) - 1));
}
inline Vectorized<float> masked_load(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
inline Vectorized<double> masked_load(const double* p, __mmask8 k) { return _mm512_maskz_loadu_pd(k, p); }
inline Vectorized<float> masked_fma(const Vectorized<float>& a, const Vectorized<float>& b,
                                    const Vectorized<float>& c, __mmask16 k) {
  return _mm512_mask3_fmadd_ps(a, b, c, k);
}
inline Vectorized<double> masked_fma(const Vectorized<double>& a, const Vectorized<double>& b,
                                     const Vectorized<double>& c, __mmask8 k) {
  return _mm512_mask3_fmadd_pd(a, b, c, k);
}
// The even lanes of a then b: a stride-2 row's columns, two vectors at a time.
inline Vectorized<float> even_lanes(const Vectorized<float>& a, const Vectorized<float>& b) {
  return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
}
inline Vectorized<double> even_lanes(const Vectorized<double>& a, const Vectorized<double>& b) {
  return _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
}
#endif

// The first n (<= V) elements at p, zeros in the other lanes.
template <typename T>
inline Vectorized<T> load_first(const T* p, int64_t n) {
#if defined(CPU_CAPABILITY_AVX512)
  return masked_load(p, static_cast<LaneMask<T>>((uint32_t(1) << n) - 1));
#else
  return Vectorized<T>::loadu(p, n);
#endif
}

template <typename T>
inline T lane_sum(const Vectorized<T>& v) {
  constexpr int64_t V = Vectorized<T>::size();
  T lanes[V];
  v.store(lanes);
  T sum = 0;
  for (int64_t l = 0; l < V; ++l) sum += lanes[l];
  return sum;
}

// v's first n (<= V) lanes stored at p (ATen's partial store goes through a buffer and memcpy).
template <typename T>
inline void store_first(T* p, const Vectorized<T>& v, int64_t n) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (sizeof(T) == 4) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((uint32_t(1) << n) - 1), v);
  } else {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((uint32_t(1) << n) - 1), v);
  }
#else
  v.store(p, n);
#endif
}

// v's first n (<= V) lanes stored `stride` elements apart from p (store_first where they are adjacent).
template <typename T>
inline void store_lanes(T* p, const Vectorized<T>& v, int64_t n, int64_t stride) {
  constexpr int64_t V = Vectorized<T>::size();
  T lanes[V];
  v.store(lanes);
  for (int64_t l = 0; l < n; ++l) p[l * stride] = lanes[l];
}

// The lanes of one dst vector at one kernel column: where its src load starts and which lanes lie
// inside the src row (the others add nothing). Loads and FMAs go through it, masked on AVX-512.
template <typename T>
struct Lanes {
  Span<T> span;
  int64_t n;  // dst lanes in this vector
#if defined(CPU_CAPABILITY_AVX512)
  LaneMask<T> mask;
  Vectorized<T> load(const T* row) const { return masked_load(row + span.start, mask); }
  AccT<T> fma(const Vectorized<T>& x, const Vectorized<T>& w, const AccT<T>& acc) const {
    return masked_fma(x, w, Vectorized<T>(acc), mask);
  }
#else
  Vectorized<T> load(const T* row) const { return span.hi <= span.lo ? Vectorized<T>(T(0)) : load_span(row, span); }
  AccT<T> fma(const Vectorized<T>& x, const Vectorized<T>& w, const AccT<T>& acc) const {
    return span.hi <= span.lo ? acc : AccT<T>(fma_span(x, w, Vectorized<T>(acc), span, n));
  }
#endif
};

// Lanes of a row strided along W, lane l at src column span.start + l * stride: a type of its own, since a
// stride test in Lanes::load costs the unit-stride kernels ~10%.
template <typename T>
struct StridedLanes : Lanes<T> {
  int64_t stride;
#if defined(CPU_CAPABILITY_AVX512)
  LaneMask<T> pair[2];  // stride 2: which elements of the 2 V from span.start to load, per vector
  Vectorized<T> load(const T* row) const {
    constexpr int64_t V = Vectorized<T>::size();
    const int64_t start = this->span.start;
    if (stride == 2) return even_lanes(masked_load(row + start, pair[0]), masked_load(row + start + V, pair[1]));
    return gather(row);
  }
#else
  Vectorized<T> load(const T* row) const { return gather(row); }
#endif
  Vectorized<T> gather(const T* row) const {
    constexpr int64_t V = Vectorized<T>::size();
    T tmp[V] = {};
    for (int64_t l = this->span.lo; l < this->span.hi; ++l) tmp[l] = row[this->span.start + l * stride];
    return Vectorized<T>::loadu(tmp);
  }
};

template <typename T, bool STRIDED>
using LanesOf = std::conditional_t<STRIDED, StridedLanes<T>, Lanes<T>>;

// [vector v][kw] of a dst row of Wdst pixels whose pixel w reads src column w * stride + offset(kw), or no
// column at all where offset(kw) is empty; StridedLanes where the stride is not 1.
template <typename T, bool STRIDED, typename Offset>
std::vector<LanesOf<T, STRIDED>> row_lanes(int64_t Wdst, int64_t Wsrc, int64_t KW, int64_t stride,
                                           const Offset& offset) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t nv = (Wdst + V - 1) / V;
  std::vector<LanesOf<T, STRIDED>> lanes(nv * KW);
  for (int64_t v = 0; v < nv; ++v)
    for (int64_t kw = 0; kw < KW; ++kw) {
      LanesOf<T, STRIDED>& l = lanes[v * KW + kw];
      l.n = std::min(V, Wdst - v * V);
      const std::optional<int64_t> off = offset(kw);
      l.span = off ? span_of<T>(v * V, l.n, *off, Wsrc, stride) : Span<T>{0, 0, 0};
#if defined(CPU_CAPABILITY_AVX512)
      l.mask = lanes_of(l.span);
#endif
      if constexpr (STRIDED) {
        l.stride = stride;
#if defined(CPU_CAPABILITY_AVX512)
        l.pair[0] = l.pair[1] = 0;
        for (int64_t lane = l.span.lo; stride == 2 && lane < l.span.hi; ++lane)
          l.pair[lane * 2 / V] |= static_cast<LaneMask<T>>(1u << (lane * 2 % V));
#endif
      }
    }
  return lanes;
}

// The lanes of a forward row (and of the weight gradient's src row): pixel w reads w * stride + kw * dil - pad.
template <typename T, bool STRIDED>
std::vector<LanesOf<T, STRIDED>> forward_lanes(const Geometry& g) {
  return row_lanes<T, STRIDED>(g.out[2], g.in[2], g.k[2], g.stride[2],
                               [&](int64_t kw) { return std::optional<int64_t>(kw * g.dil[2] - g.pad[2]); });
}

struct CfTerm {  // one (src channel, kd, kh) read by a block of dst rows
  int64_t src_offset;  // its src row for dst row 0 of the block (outside the plane where that row reads padding)
  int64_t w_offset;    // weight of the first dst channel at kw = 0
  uint32_t rows;       // bit r: dst row r reads a src row inside the plane
};

// A channels-first direction as rows: dst row r of a block reads, for each term, src row + r * src_step
// (elements); dst row r is at dst + r * dst_step.
template <typename T>
struct CfRows {
  const T* src;
  int64_t src_step, dst_step, w_step, KW;  // w_step: from one dst channel's weights to the next
  const Lanes<T>* lanes;                   // row_lanes of the dst row (nullptr where strided_lanes are)
  int64_t slide_kh = 0;                    // KH where cf_block may share src rows (sliding_kh), else 0
  bool slide_reverse = false;              // cf_block's REV: the input gradient
  int64_t w_stride = 1;                    // the layer's stride along W: src (forward) or dst lanes that far apart
  const StridedLanes<T>* strided_lanes = nullptr;  // the forward's, where w_stride is not 1
};

// Register rows of a block: accumulators for OB channels x RB rows x P vectors fill the register file.
constexpr int block_rows(int OB, int P) { return std::max(1, std::min(8, MAX_ACC / (OB * P))); }

// OB dst channels x nr (<= RB) rows x P vectors from vector v0, summed over the terms, taken KH at a time.
// KH = 1: dst row r reads src row (term, r); each weight is loaded once per (term, kw) and used RB * P times,
// each src vector once per (term, kw, r) and used OB times. KH > 1 (unit stride and dilation along H): the KH
// terms of one (src channel, kd) read src rows base + j, where dst row r reads row j = r + kh (REV, the input
// gradient: j = r + KH - 1 - kh), so each src vector is loaded once per (j, kw) and used by every dst row and
// channel that reads it, not once per (kh, r): KH times fewer loads.
// W_STRIDED: a layer strided along W, whose forward loads src columns that far apart (job.strided_lanes) and
// whose input gradient stores dst lanes that far apart (one phase of the stride at a time).
template <typename T, int OB, int RB, int P, int KH, bool REV, bool W_STRIDED>
inline void cf_block(const CfRows<T>& job, const CfTerm* terms, int64_t nterms, const T* w, int64_t v0, int64_t nr,
                     T* const* dst) {
  constexpr int64_t V = Vectorized<T>::size();
  constexpr int J = RB + KH - 1;  // src rows a block reads
  constexpr bool SRC_STRIDED = W_STRIDED && !REV, DST_STRIDED = W_STRIDED && REV;
  const int64_t KW = job.KW;
  const LanesOf<T, SRC_STRIDED>* lanes = [&] {
    if constexpr (SRC_STRIDED) return job.strided_lanes;
    else return job.lanes;
  }() + v0 * KW;
  AccT<T> acc[OB][RB][P];
  unroll<OB>([&](auto ob) __attribute__((always_inline)) {
    unroll<RB>([&](auto r) __attribute__((always_inline)) {
      unroll<P>([&](auto p) __attribute__((always_inline)) { acc[ob][r][p] = Vectorized<T>(T(0)); });
    });
  });
  // Taps outside, terms inside: a vector's lanes (on AVX-512 its mask) stay in registers across the terms.
  for (int64_t kw = 0; kw < KW; ++kw) {
    LanesOf<T, SRC_STRIDED> tap[P];
    unroll<P>([&](auto p) __attribute__((always_inline)) { tap[p] = lanes[p * KW + kw]; });
    for (int64_t t = 0; t + KH <= nterms; t += KH) {
      const CfTerm* group = terms + t;  // kh = 0 .. KH - 1 of one (src channel, kd)
      uint32_t rows = 0;                // bit j: src row j is read and lies inside the plane
      for (int kh = 0; kh < KH; ++kh) rows |= group[kh].rows << (REV ? KH - 1 - kh : kh);
      if (rows == 0) continue;
      const T* base = job.src + group[REV ? KH - 1 : 0].src_offset;
      const T* wt = w + group[0].w_offset + kw;  // channel ob's kh at wt + ob * w_step + kh * KW
      Vectorized<T> wv[OB][KH];
      unroll<OB>([&](auto ob) __attribute__((always_inline)) {
        unroll<KH>([&](auto kh) __attribute__((always_inline)) {
          wv[ob][kh] = Vectorized<T>(wt[ob * job.w_step + kh * KW]);
        });
      });
      unroll<P>([&](auto p) __attribute__((always_inline)) {
        const LanesOf<T, SRC_STRIDED>& l = tap[p];
        unroll<J>([&](auto j) __attribute__((always_inline)) {
          if (!(rows >> j & 1u)) return;
          const Vectorized<T> xv = l.load(base + j * job.src_step);
          unroll<KH>([&](auto kh) __attribute__((always_inline)) {
            constexpr int r = j - (REV ? KH - 1 - kh : kh);
            if constexpr (r >= 0 && r < RB) {
              unroll<OB>([&](auto ob) __attribute__((always_inline)) {
                acc[ob][r][p] = l.fma(xv, wv[ob][kh], acc[ob][r][p]);
              });
            }
          });
        });
      });
    }
  }
  unroll<OB>([&](auto ob) __attribute__((always_inline)) {
    unroll<RB>([&](auto r) __attribute__((always_inline)) {
      if (r >= nr) return;
      unroll<P>([&](auto p) __attribute__((always_inline)) {
        T* out = dst[ob] + r * job.dst_step + (v0 + p) * V * (DST_STRIDED ? job.w_stride : 1);
        if constexpr (DST_STRIDED) store_lanes(out, Vectorized<T>(acc[ob][r][p]), lanes[p * KW].n, job.w_stride);
        else store_first(out, Vectorized<T>(acc[ob][r][p]), lanes[p * KW].n);
      });
    });
  });
}

// Weights a block of KH > 1 keeps in registers beside its accumulators (at 4 channels x 3 rows it spills and
// runs ~15% slower than KH = 1).
constexpr int MAX_SLIDING_WEIGHTS = MAX_ACC * 5 / 8;

// cf_block with the job's kernel height where it allows sharing src rows and the weights fit, else KH = 1.
template <typename T, int OB, int RB, int P>
inline void cf_block_any(const CfRows<T>& job, const CfTerm* terms, int64_t nterms, const T* w, int64_t v0,
                         int64_t nr, T* const* dst) {
  if (job.w_stride != 1) {  // KH = 1 (sliding_kh), which keeps the instantiations few
    if (job.slide_reverse) return cf_block<T, OB, RB, P, 1, true, true>(job, terms, nterms, w, v0, nr, dst);
    return cf_block<T, OB, RB, P, 1, false, true>(job, terms, nterms, w, v0, nr, dst);
  }
  const auto run = [&](auto kh) {
    constexpr int KH = OB * decltype(kh)::value <= MAX_SLIDING_WEIGHTS ? decltype(kh)::value : 1;
    if (job.slide_reverse) return cf_block<T, OB, RB, P, KH, true, false>(job, terms, nterms, w, v0, nr, dst);
    cf_block<T, OB, RB, P, KH, false, false>(job, terms, nterms, w, v0, nr, dst);
  };
  switch (job.slide_kh) {
    case 3: return run(std::integral_constant<int, 3>{});
    case 5: return run(std::integral_constant<int, 5>{});
    case 7: return run(std::integral_constant<int, 7>{});
    default: run(std::integral_constant<int, 1>{});
  }
}

// OB dst channels x nr rows, every vector of the row: PMAX vectors at a time, then the rest.
template <typename T, int OB, int RB, int PMAX>
inline void cf_channel_block(const CfRows<T>& job, const CfTerm* terms, int64_t nterms, const T* w, int64_t nv,
                             int64_t nr, T* const* dst) {
  int64_t v = 0;
  const auto block = [&](auto p) {
    cf_block_any<T, OB, RB, decltype(p)::value>(job, terms, nterms, w, v, nr, dst);
  };
  for (; v + PMAX <= nv; v += PMAX) block(std::integral_constant<int, PMAX>{});
  if constexpr (PMAX > 1) {
    if (v < nv) with_count<PMAX - 1>(nv - v, block);
  }
}

// `count` dst channels (dst channel c's row 0 at dst0 + c * channel_step, its weights at w + c * job.w_step)
// x nr rows: 4, 2 and 1 channels at a time.
template <typename T, int OB_MAIN, int RB, int PMAX>
void cf_channels(const CfRows<T>& job, const CfTerm* terms, int64_t nterms, const T* w, int64_t nv, int64_t nr,
                 T* dst0, int64_t channel_step, int64_t count) {
  int64_t c = 0;
  const auto run = [&](auto ob) __attribute__((always_inline)) {
    constexpr int OB = decltype(ob)::value;
    for (; c + OB <= count; c += OB) {
      T* dst[OB];
      for (int i = 0; i < OB; ++i) dst[i] = dst0 + (c + i) * channel_step;
      cf_channel_block<T, OB, RB, PMAX>(job, terms, nterms, w + c * job.w_step, nv, nr, dst);
    }
  };
  if constexpr (OB_MAIN >= 4) run(std::integral_constant<int, 4>{});
  if constexpr (OB_MAIN >= 2) run(std::integral_constant<int, 2>{});
  run(std::integral_constant<int, 1>{});
}

// A task's terms over all its rows of one phase (at most CF_TASK_ROWS, so a term's rows fit its bits), and
// one block's share of them: listing terms costs divisions, so it is done once per task, not per block.
struct CfTermLists {
  std::vector<CfTerm> task, block;
  explicit CfTermLists(int64_t n) : task(n), block(n) {}
};

// The terms of rows [shift, shift + nr) of a list: their src rows `shift` steps further, their row bits from 0.
inline void shift_terms(const CfTerm* terms, int64_t n, int64_t shift, int64_t nr, int64_t src_step, CfTerm* out) {
  const uint32_t block = (uint32_t(1) << nr) - 1;
  for (int64_t i = 0; i < n; ++i)
    out[i] = {terms[i].src_offset + shift * src_step, terms[i].w_offset, terms[i].rows >> shift & block};
}

// The dst rows of one task of a channels-first direction: positions [q0, q1) of the plane's rows taken in
// phase-major order (rows p, p + step, p + 2 * step, ... for phase p < step), in blocks of RB rows of one
// phase. `terms_of(first_row, nr, terms)` lists the terms of rows first_row + r * step, r < nr.
template <typename T, int OB_MAIN, int PMAX, typename Terms>
void cf_task_rows(const CfRows<T>& job, int64_t H, int64_t step, int64_t q0, int64_t q1, int64_t nv, const T* w,
                  T* dst_plane, int64_t row_width, int64_t channel_step, int64_t count, CfTermLists& terms,
                  const Terms& terms_of) {
  constexpr int RB = block_rows(OB_MAIN, PMAX);
  int64_t phase_start = 0;  // position of the phase's first row
  for (int64_t phase = 0; phase < std::min(step, H) && phase_start < q1; ++phase) {
    const int64_t rows = (H - phase + step - 1) / step;
    const int64_t k0 = std::max<int64_t>(0, q0 - phase_start), k1 = std::min(rows, q1 - phase_start);
    const int64_t nterms = k0 < k1 ? terms_of(phase + k0 * step, k1 - k0, terms.task.data()) : 0;
    for (int64_t k = k0; k < k1; k += RB) {
      const int64_t nr = std::min<int64_t>(RB, k1 - k), first = phase + k * step;
      shift_terms(terms.task.data(), nterms, k - k0, nr, job.src_step, terms.block.data());
      cf_channels<T, OB_MAIN, RB, PMAX>(job, terms.block.data(), nterms, w, nv, nr, dst_plane + first * row_width,
                                        channel_step, count);
    }
    phase_start += rows;
  }
}

// cf_task_rows with the register blocking chosen for `count` dst channels and the row's vectors.
template <typename T, typename Terms>
void cf_task(const CfRows<T>& job, int64_t H, int64_t step, int64_t q0, int64_t q1, int64_t Wdst, const T* w,
             T* dst_plane, int64_t channel_step, int64_t count, CfTermLists& terms, const Terms& terms_of) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t nv = (Wdst + V - 1) / V, width = job.dst_step / step;  // dst_step: `step` rows
  const auto with_pmax = [&](auto ob_main) {
    constexpr int OB_MAIN = decltype(ob_main)::value;
    if (nv >= 3)
      return cf_task_rows<T, OB_MAIN, 3>(job, H, step, q0, q1, nv, w, dst_plane, width, channel_step, count, terms,
                                         terms_of);
    if (nv == 2)
      return cf_task_rows<T, OB_MAIN, 2>(job, H, step, q0, q1, nv, w, dst_plane, width, channel_step, count, terms,
                                         terms_of);
    cf_task_rows<T, OB_MAIN, 1>(job, H, step, q0, q1, nv, w, dst_plane, width, channel_step, count, terms, terms_of);
  };
  if (count >= 4) return with_pmax(std::integral_constant<int, 4>{});
  if (count >= 2) return with_pmax(std::integral_constant<int, 2>{});
  with_pmax(std::integral_constant<int, 1>{});
}

// Bits r < nr of the rows whose src row first + r * step lies in [0, limit).
inline uint32_t rows_inside(int64_t first, int64_t step, int64_t nr, int64_t limit) {
  uint32_t bits = 0;
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t row = first + r * step;
    if (row >= 0 && row < limit) bits |= 1u << r;
  }
  return bits;
}

// The KH at which cf_block may share src rows in a channels-first job: unit stride and dilation along H, unit
// stride along W (strided blocks are built for KH = 1 only) and a kernel height it is built for; else 0. Its
// terms must then list every kh, rows or not.
inline int64_t sliding_kh(const Geometry& g) {
  const bool eligible = g.stride[1] == 1 && g.dil[1] == 1 && g.stride[2] == 1;
  return eligible && (g.k[1] == 3 || g.k[1] == 5 || g.k[1] == 7) ? g.k[1] : 0;
}

// ---- channels-first flat rows: a chunk's rows as one row, for rows narrower than whole vectors ----
// A 14-wide row fills 14 of 16 lanes, a 28-wide one 28 of 32. Where src and dst rows are equally wide and the
// layer unit-strided, a chunk of dst rows laid end to end is one flat row whose every tap (kh, kw) reads src at a
// fixed offset along it, its lanes masked where the tap falls outside the src plane. AVX-512 masks any set of
// lanes; the other ISAs' Lanes mask a run of lanes only, so they keep the rows.
#if defined(CPU_CAPABILITY_AVX512)
constexpr bool FLAT_ROWS = true;
#else
constexpr bool FLAT_ROWS = false;
#endif

// Whether a channels-first layer runs flat rows: unit strides, src and dst rows equally wide, not a whole number
// of vectors and narrower than 4 (wider rows ran no faster flat). The forward and input gradient take them
// from 4 dst channels per group (FLAT_CHANNELS): fewer keep cf_block's shared src rows (MAX_SLIDING_WEIGHTS),
// which 2 per group ran faster with.
template <typename T>
inline bool flat_rows(const Geometry& g) {
  constexpr int64_t V = Vectorized<T>::size();
  const bool unit = g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1;
  return FLAT_ROWS && unit && g.in[2] == g.out[2] && g.out[2] % V != 0 && g.out[2] < 4 * V;
}
constexpr int64_t FLAT_CHANNELS = 4;

// The lanes [vector][tap (kh, kw)] of dst rows [q0, q0 + nrows) of a W-wide plane as one flat row: dst pixel
// (r, c) reads src pixel (r + row_off(kh), c + col_off(kw)) of a Hsrc x W plane, masked off outside it.
template <typename T, typename RowOff, typename ColOff>
std::vector<Lanes<T>> flat_lanes(int64_t q0, int64_t nrows, int64_t W, int64_t Hsrc, int64_t KH, int64_t KW,
                                 const RowOff& row_off, const ColOff& col_off) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t pixels = nrows * W, nv = (pixels + V - 1) / V;
  std::vector<Lanes<T>> lanes(nv * KH * KW);
#if defined(CPU_CAPABILITY_AVX512)
  for (int64_t v = 0; v < nv; ++v)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        Lanes<T>& l = lanes[(v * KH + kh) * KW + kw];
        const int64_t p0 = q0 * W + v * V;
        l.n = std::min(V, pixels - v * V);
        l.span = {p0 + row_off(kh) * W + col_off(kw), 0, l.n};
        l.mask = 0;
        for (int64_t lane = 0; lane < l.n; ++lane) {
          const int64_t r = (p0 + lane) / W + row_off(kh), c = (p0 + lane) % W + col_off(kw);
          if (r >= 0 && r < Hsrc && c >= 0 && c < W) l.mask |= static_cast<LaneMask<T>>(1u << lane);
        }
      }
#else
  (void)q0, (void)Hsrc, (void)row_off, (void)col_off;
#endif
  return lanes;
}

// One chunk as a flat row: `count` dst channels (channel c at dst + c * channel_step) summed over the terms,
// each a src plane and its first weight, every tap of the plane along the row (job.KW = KH * KW).
template <typename T>
void cf_flat(const CfRows<T>& job, const CfTerm* terms, int64_t nterms, const T* w, int64_t pixels, T* dst,
             int64_t channel_step, int64_t count) {
  constexpr int64_t V = Vectorized<T>::size();
  cf_channels<T, 4, 1, MAX_ACC / 4>(job, terms, nterms, w, (pixels + V - 1) / V, 1, dst, channel_step, count);
}

// The flat lanes of each chunk of a plane of H rows, built when first needed: build(q0, rows).
template <typename T, typename Build>
class FlatChunks {
 public:
  FlatChunks(int64_t H, Build build) : H_(H), build_(build), lanes_(cf_chunks(H)) {}
  const Lanes<T>* of(int64_t q0) {
    std::vector<Lanes<T>>& l = lanes_[q0 / CF_TASK_ROWS];
    if (l.empty()) l = build_(q0, std::min(H_, q0 + CF_TASK_ROWS) - q0);
    return l.data();
  }

 private:
  int64_t H_;
  Build build_;
  std::vector<std::vector<Lanes<T>>> lanes_;
};
template <typename T, typename Build>
FlatChunks<T, Build> flat_chunks(int64_t H, Build build) {
  return FlatChunks<T, Build>(H, build);
}

// A task's place: (n, group, depth, chunk of CF_TASK_ROWS row positions) of `chunks` per plane.
struct CfTask {
  int64_t n, grp, d, q0;
};
inline CfTask cf_task_of(int64_t t, int64_t G, int64_t D, int64_t chunks) {
  return {t / (G * D * chunks), t / (D * chunks) % G, t / chunks % D, t % chunks * CF_TASK_ROWS};
}

// The planes of one side of a channels-first direction: channels per group, depth and rows.
struct CfPlanes {
  int64_t per_group, D, H;
};

// A channels-first direction on flat rows (flat_rows), a task per (n, group, dst depth, chunk of rows) as in
// forward_cf: dst channel c sums, over src channel s of its group and kd, the src plane at depth
// d + sign * (kd * dil - pad) through tap (kh, kw) at a pixel offset of sign * (k * dil - pad) rows and columns,
// weighted by w[group's first + s * w_src + c * w_dst + tap]. The forward is sign +1, its input gradient -1.
template <typename T>
void cf_flat_direction(const Geometry& g, int64_t sign, const T* src, CfPlanes from, int64_t w_src, T* dst,
                       CfPlanes to, int64_t w_dst, const T* w, int64_t begin, int64_t end) {
  const int64_t KD = g.k[0], KH = g.k[1], KW = g.k[2], K = g.taps(), W = g.out[2];
  const auto offset = [&](int64_t k, int dim) { return sign * (k * g.dil[dim] - g.pad[dim]); };
  auto chunk_lanes = flat_chunks<T>(to.H, [&](int64_t q0, int64_t rows) {
    return flat_lanes<T>(q0, rows, W, from.H, KH, KW, [&](int64_t kh) { return offset(kh, 1); },
                         [&](int64_t kw) { return offset(kw, 2); });
  });
  std::vector<CfTerm> terms(from.per_group * KD);
  const int64_t chunks = cf_chunks(to.H), src_plane = from.H * W, dst_plane = to.H * W;
  for (int64_t t = begin; t < end; ++t) {
    const CfTask task = cf_task_of(t, g.G, to.D, chunks);
    int64_t nterms = 0;
    for (int64_t s = 0; s < from.per_group; ++s)
      for (int64_t kd = 0; kd < KD; ++kd) {
        const int64_t d = task.d + offset(kd, 0);
        if (d >= 0 && d < from.D)
          terms[nterms++] = {(((task.n * g.G + task.grp) * from.per_group + s) * from.D + d) * src_plane,
                             s * w_src + kd * KH * KW, 1u};
      }
    const int64_t rows = std::min(to.H, task.q0 + CF_TASK_ROWS) - task.q0;
    const CfRows<T> job{src, 0, rows * W, w_dst, KH * KW, chunk_lanes.of(task.q0)};
    T* plane = dst + ((task.n * g.G + task.grp) * to.per_group * to.D + task.d) * dst_plane + task.q0 * W;
    cf_flat(job, terms.data(), nterms, w + task.grp * g.Og * g.Cg * K, rows * W, plane, to.D * dst_plane,
            to.per_group);
  }
}

// Forward, channels-first: a task is (n, g, od, chunk of output rows).
template <typename T>
void forward_cf(const Geometry& g, const T* x, const T* w, T* y, int64_t begin, int64_t end) {
  if (g.Og >= FLAT_CHANNELS && flat_rows<T>(g)) {
    const int64_t K = g.taps();
    return cf_flat_direction(g, 1, x, {g.Cg, g.in[0], g.in[1]}, K, y, {g.Og, g.out[0], g.out[1]}, g.Cg * K, w, begin,
                             end);
  }
  const int64_t KD = g.k[0], KH = g.k[1], KW = g.k[2], K = g.taps();
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2], ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const bool strided = g.stride[2] != 1;
  const auto lanes = strided ? std::vector<Lanes<T>>() : forward_lanes<T, false>(g);
  const auto strided_lanes = strided ? forward_lanes<T, true>(g) : std::vector<StridedLanes<T>>();
  const CfRows<T> job{x, g.stride[1] * IW, OW, g.Cg * K, KW, lanes.data(), sliding_kh(g), false, g.stride[2],
                      strided ? strided_lanes.data() : nullptr};
  CfTermLists terms(g.Cg * KD * KH);
  const int64_t chunks = cf_chunks(OH);
  for (int64_t t = begin; t < end; ++t) {
    const CfTask task = cf_task_of(t, g.G, OD, chunks);
    const auto terms_of = [&](int64_t oh, int64_t nr, CfTerm* out) {
      int64_t nterms = 0;
      for (int64_t i = 0; i < g.Cg; ++i)
        for (int64_t kd = 0; kd < KD; ++kd) {
          const int64_t id = task.d * g.stride[0] + kd * g.dil[0] - g.pad[0];
          if (id < 0 || id >= ID) continue;
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t ih = oh * g.stride[1] + kh * g.dil[1] - g.pad[1];
            const uint32_t rows = rows_inside(ih, g.stride[1], nr, IH);
            if (rows == 0 && job.slide_kh == 0) continue;
            out[nterms++] = {(((task.n * g.C() + task.grp * g.Cg + i) * ID + id) * IH + ih) * IW,
                             i * K + (kd * KH + kh) * KW, rows};
          }
        }
      return nterms;
    };
    T* plane = y + ((task.n * g.O() + task.grp * g.Og) * OD + task.d) * OH * OW;
    cf_task(job, OH, 1, task.q0, std::min(OH, task.q0 + CF_TASK_ROWS), OW, w + task.grp * g.Og * g.Cg * K, plane,
            OD * OH * OW, g.Og, terms, terms_of);
  }
}

// Input gradient, channels-first: a task is (n, g, id, chunk of input rows), the rows taken phase by phase,
// since the rows of one phase of the H stride read consecutive grad_y rows; so are the columns: input column
// iw = ph + q * SW reads grad_y column q + (ph + pad - kw * dil) / SW at the taps kw where that divides,
// so each phase of the W stride is a unit-stride row of its own, its lanes stored SW apart.
template <typename T>
void input_grad_cf(const Geometry& g, const T* gy, const T* w, T* gx, int64_t begin, int64_t end) {
  if (g.Cg >= FLAT_CHANNELS && flat_rows<T>(g)) {
    const int64_t K = g.taps();
    return cf_flat_direction(g, -1, gy, {g.Og, g.out[0], g.out[1]}, g.Cg * K, gx, {g.Cg, g.in[0], g.in[1]}, K, w,
                             begin, end);
  }
  const int64_t KD = g.k[0], KH = g.k[1], KW = g.k[2], K = g.taps();
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2], ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const int64_t SH = g.stride[1], SW = std::min(g.stride[2], IW);  // a stride past the row: a phase per column
  const auto phase_width = [&](int64_t ph) { return (IW - ph + SW - 1) / SW; };  // input columns ph, ph + SW, ...
  std::vector<std::vector<Lanes<T>>> phases;
  for (int64_t ph = 0; ph < SW; ++ph)
    phases.push_back(row_lanes<T, false>(phase_width(ph), OW, KW, 1, [&](int64_t kw) {
      const int64_t num = ph + g.pad[2] - kw * g.dil[2];
      return num % g.stride[2] == 0 ? std::optional<int64_t>(num / g.stride[2]) : std::nullopt;
    }));
  CfRows<T> job{gy, OW, SH * IW, K, KW, nullptr, sliding_kh(g), true, g.stride[2]};
  CfTermLists terms(g.Og * KD * KH);
  const int64_t chunks = cf_chunks(IH);
  for (int64_t t = begin; t < end; ++t) {
    const CfTask task = cf_task_of(t, g.G, ID, chunks);
    const auto terms_of = [&](int64_t ih, int64_t nr, CfTerm* out) {
      int64_t nterms = 0;
      for (int64_t j = 0; j < g.Og; ++j)
        for (int64_t kd = 0; kd < KD; ++kd) {
          const int64_t num_d = task.d + g.pad[0] - kd * g.dil[0];
          if (num_d < 0 || num_d % g.stride[0] != 0 || num_d / g.stride[0] >= OD) continue;
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t num_h = ih + g.pad[1] - kh * g.dil[1];
            if (num_h % SH != 0) continue;  // this phase's rows never read that tap
            const uint32_t rows = rows_inside(num_h / SH, 1, nr, OH);
            if (rows == 0 && job.slide_kh == 0) continue;
            out[nterms++] = {(((task.n * g.O() + task.grp * g.Og + j) * OD + num_d / g.stride[0]) * OH + num_h / SH) * OW,
                             j * g.Cg * K + (kd * KH + kh) * KW, rows};
          }
        }
      return nterms;
    };
    T* plane = gx + ((task.n * g.C() + task.grp * g.Cg) * ID + task.d) * IH * IW;
    for (int64_t ph = 0; ph < SW; ++ph) {
      job.lanes = phases[ph].data();
      cf_task(job, IH, SH, task.q0, std::min(IH, task.q0 + CF_TASK_ROWS), phase_width(ph),
              w + task.grp * g.Og * g.Cg * K, plane + ph, ID * IH * IW, g.Cg, terms, terms_of);
    }
  }
}

// Output channels j0.. (nj <= JB) x input channels i0.. (ni <= IB) x the KB kernel columns from kw0 of
// one (kd, kh), summed over the whole plane in registers and across lanes once at the end: each grad_y
// vector is loaded once per row and used for every column and input channel of the block.
template <typename T, int JB, int IB, int KB, typename L>
void wg_cf_block(const Geometry& g, const T* x_planes, const T* gy_planes, int64_t nj, int64_t ni, int64_t kd,
                 int64_t kh, int64_t kw0, const L* lanes, T* partial) {
  constexpr int64_t V = Vectorized<T>::size();
  const int64_t OD = g.out[0], OH = g.out[1], OW = g.out[2], ID = g.in[0], IH = g.in[1], IW = g.in[2];
  const int64_t KW = g.k[2], nv = (OW + V - 1) / V, x_plane = ID * IH * IW, gy_plane = OD * OH * OW;
  AccT<T> acc[JB][IB][KB];
  unroll<JB>([&](auto jb) __attribute__((always_inline)) {
    unroll<IB>([&](auto ib) __attribute__((always_inline)) {
      unroll<KB>([&](auto kb) __attribute__((always_inline)) { acc[jb][ib][kb] = Vectorized<T>(T(0)); });
    });
  });
  for (int64_t od = 0; od < OD; ++od) {
    const int64_t id = od * g.stride[0] + kd * g.dil[0] - g.pad[0];
    if (id < 0 || id >= ID) continue;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t ih = oh * g.stride[1] + kh * g.dil[1] - g.pad[1];
      if (ih < 0 || ih >= IH) continue;
      const T* x_row = x_planes + (id * IH + ih) * IW;
      const T* gy_row = gy_planes + (od * OH + oh) * OW;
      for (int64_t v = 0; v < nv; ++v) {
        const L* lv = lanes + v * KW + kw0;
        Vectorized<T> gv[JB];
        unroll<JB>([&](auto jb) __attribute__((always_inline)) {
          if (jb < nj) gv[jb] = load_first(gy_row + jb * gy_plane + v * V, lv->n);
        });
        unroll<KB>([&](auto kb) __attribute__((always_inline)) {
          unroll<IB>([&](auto ib) __attribute__((always_inline)) {
            if (ib >= ni) return;
            const Vectorized<T> xv = lv[kb].load(x_row + ib * x_plane);
            unroll<JB>([&](auto jb) __attribute__((always_inline)) {
              if (jb < nj) acc[jb][ib][kb] = lv[kb].fma(xv, gv[jb], acc[jb][ib][kb]);
            });
          });
        });
      }
    }
  }
  const int64_t first_tap = (kd * g.k[1] + kh) * KW + kw0, K = g.taps();
  unroll<JB>([&](auto jb) __attribute__((always_inline)) {
    unroll<IB>([&](auto ib) __attribute__((always_inline)) {
      unroll<KB>([&](auto kb) __attribute__((always_inline)) {
        if (jb >= nj || ib >= ni) return;
        partial[(jb * g.Cg + ib) * K + first_tap + kb] += lane_sum<T>(acc[jb][ib][kb]);
      });
    });
  });
}

// Weight gradient, channels-first: a task is (n, g); partial: (O, Cg, K). Blocks of JB output x IB input
// channels x KB_MAX kernel columns (the last block of a row exactly as many as are left). The lanes of the
// src row (L: Lanes or, strided along W, StridedLanes) are the same on every row.
template <typename T, int JB, int IB, int KB_MAX, typename L>
void weight_grad_cf_blocked(const Geometry& g, const std::vector<L>& lanes, const T* x, const T* gy, T* partial,
                            int64_t begin, int64_t end) {
  const int64_t KD = g.k[0], KH = g.k[1], KW = g.k[2], K = g.taps(), OW = g.out[2], IW = g.in[2];
  const int64_t x_plane = g.in[0] * g.in[1] * IW, gy_plane = g.out[0] * g.out[1] * OW;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t n = t / g.G, grp = t % g.G;
    for (int64_t j0 = 0; j0 < g.Og; j0 += JB)
      for (int64_t i0 = 0; i0 < g.Cg; i0 += IB) {
        const T* xp = x + (n * g.C() + grp * g.Cg + i0) * x_plane;
        const T* gyp = gy + (n * g.O() + grp * g.Og + j0) * gy_plane;
        const int64_t nj = std::min<int64_t>(JB, g.Og - j0), ni = std::min<int64_t>(IB, g.Cg - i0);
        T* out = partial + ((grp * g.Og + j0) * g.Cg + i0) * K;
        for (int64_t kd = 0; kd < KD; ++kd)
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw0 = 0; kw0 < KW; kw0 += KB_MAX) {
              const auto block = [&](auto kb) {
                wg_cf_block<T, JB, IB, decltype(kb)::value>(g, xp, gyp, nj, ni, kd, kh, kw0, lanes.data(), out);
              };
              with_count<KB_MAX>(std::min<int64_t>(KB_MAX, KW - kw0), block);
            }
      }
  }
}

// The layer on flat rows (flat_rows) seen as one whose planes are each one row of every kernel tap: each
// (n, group) plane runs as one flat row whose taps carry their own masks.
inline Geometry flat_geometry(const Geometry& g) {
  Geometry f = g;
  f.in[1] = f.out[1] = f.k[1] = 1;
  f.in[2] = g.in[1] * g.in[2];
  f.out[2] = g.out[1] * g.out[2];
  f.k[2] = g.k[1] * g.k[2];
  f.pad[1] = f.pad[2] = 0;
  f.dil[1] = f.dil[2] = 1;
  return f;
}

// A weight-gradient block's accumulators, output channels x 2 input channels x taps, beside its grad_y vectors and
// one src vector: 4 x 2 x 3 (29 registers) on AVX-512's 32, so a 3-wide kernel row is one block; 2 x 2 x 2 on 16.
// Layers with fewer output channels per group keep 2 x 2 x (MAX_ACC / 4), which leaves no accumulator idle.
constexpr int WG_CF_OUT = MAX_ACC == 16 ? 4 : 2, WG_CF_TAPS = MAX_ACC == 16 ? 3 : 2;

template <typename T>
void weight_grad_cf(const Geometry& g, const T* x, const T* gy, T* partial, int64_t begin, int64_t end) {
  const bool depthwise = g.Og == 1 && g.Cg == 1;
  const auto run = [&](const Geometry& geometry, const auto& lanes) {
    if (depthwise)
      return weight_grad_cf_blocked<T, 1, 1, std::min(8, MAX_ACC)>(geometry, lanes, x, gy, partial, begin, end);
    if (g.Og >= WG_CF_OUT)
      return weight_grad_cf_blocked<T, WG_CF_OUT, 2, WG_CF_TAPS>(geometry, lanes, x, gy, partial, begin, end);
    weight_grad_cf_blocked<T, 2, 2, MAX_ACC / 4>(geometry, lanes, x, gy, partial, begin, end);
  };
  if (!depthwise && flat_rows<T>(g)) {  // depthwise ran 10-20% slower flat (a whole plane of masks: 70-380 KB)
    return run(flat_geometry(g), flat_lanes<T>(0, g.out[1], g.out[2], g.in[1], g.k[1], g.k[2],
                                               [&](int64_t kh) { return kh * g.dil[1] - g.pad[1]; },
                                               [&](int64_t kw) { return kw * g.dil[2] - g.pad[2]; }));
  }
  if (g.stride[2] != 1) return run(g, forward_lanes<T, true>(g));
  run(g, forward_lanes<T, false>(g));
}

// ---- layout change: a tile of one (rows x cols) matrix at a time, in register transposes ----
// A full V x V float block through registers: ATen's transpose_mxn takes every block through an out-of-line
// call whose runtime sizes keep the block on the stack (load-bound, at a third of a copy's rate).
#if defined(CPU_CAPABILITY_AVX512)
inline void transpose_full(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m512 a[16], b[16];
  unroll<16>([&](auto i) __attribute__((always_inline)) { a[i] = _mm512_loadu_ps(src + i * ld_src); });
  unroll<8>([&](auto i) __attribute__((always_inline)) {  // pairs of rows, 32-bit lanes interleaved
    b[2 * i] = _mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]);
    b[2 * i + 1] = _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]);
  });
  unroll<4>([&](auto i) __attribute__((always_inline)) {  // quads, 64-bit lanes interleaved
    const auto pd = [&](int k) { return _mm512_castps_pd(b[4 * i + k]); };
    a[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(0), pd(2)));
    a[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(0), pd(2)));
    a[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(1), pd(3)));
    a[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(1), pd(3)));
  });
  unroll<2>([&](auto i) __attribute__((always_inline)) {  // octets, 128-bit lanes
    unroll<4>([&](auto k) __attribute__((always_inline)) {
      b[8 * i + k] = _mm512_shuffle_f32x4(a[8 * i + k], a[8 * i + k + 4], 0x88);
      b[8 * i + k + 4] = _mm512_shuffle_f32x4(a[8 * i + k], a[8 * i + k + 4], 0xdd);
    });
  });
  unroll<8>([&](auto i) __attribute__((always_inline)) {
    _mm512_storeu_ps(dst + i * ld_dst, _mm512_shuffle_f32x4(b[i], b[i + 8], 0x88));
    _mm512_storeu_ps(dst + (i + 8) * ld_dst, _mm512_shuffle_f32x4(b[i], b[i + 8], 0xdd));
  });
}
#elif defined(CPU_CAPABILITY_AVX2)
inline void transpose_full(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m256 a[8], b[8];
  unroll<8>([&](auto i) __attribute__((always_inline)) { a[i] = _mm256_loadu_ps(src + i * ld_src); });
  unroll<4>([&](auto i) __attribute__((always_inline)) {  // pairs of rows, 32-bit lanes interleaved
    b[2 * i] = _mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]);
    b[2 * i + 1] = _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]);
  });
  unroll<2>([&](auto i) __attribute__((always_inline)) {  // quads: column j of 4 rows in each 128-bit half
    a[4 * i] = _mm256_shuffle_ps(b[4 * i], b[4 * i + 2], 0x44);
    a[4 * i + 1] = _mm256_shuffle_ps(b[4 * i], b[4 * i + 2], 0xee);
    a[4 * i + 2] = _mm256_shuffle_ps(b[4 * i + 1], b[4 * i + 3], 0x44);
    a[4 * i + 3] = _mm256_shuffle_ps(b[4 * i + 1], b[4 * i + 3], 0xee);
  });
  unroll<4>([&](auto i) __attribute__((always_inline)) {
    _mm256_storeu_ps(dst + i * ld_dst, _mm256_permute2f128_ps(a[i], a[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ld_dst, _mm256_permute2f128_ps(a[i], a[i + 4], 0x31));
  });
}
#endif

// One (m x n) block, m and n at most the float lanes: dst[j * ld_dst + i] = src[i * ld_src + j].
template <typename T>
inline void transpose_block(const T* src, int64_t ld_src, T* dst, int64_t ld_dst, int64_t m, int64_t n) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (m == Vectorized<float>::size() && n == Vectorized<float>::size())
      return transpose_full(src, ld_src, dst, ld_dst);
  }
#endif
  at::vec::transpose_mxn<T>(src, ld_src, dst, ld_dst, static_cast<int>(m), static_cast<int>(n));
}

template <typename T>
void transpose(const T* src, T* dst, int64_t rows, int64_t cols, int64_t begin, int64_t end) {
  constexpr int64_t B = Vectorized<float>::size();
  const int64_t row_tiles = (rows + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE;
  const int64_t col_tiles = (cols + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t n = t / (row_tiles * col_tiles);
    const int64_t r0 = t / col_tiles % row_tiles * TRANSPOSE_TILE, c0 = t % col_tiles * TRANSPOSE_TILE;
    const T* from = src + n * rows * cols;
    T* to = dst + n * rows * cols;
    for (int64_t r = r0; r < std::min(rows, r0 + TRANSPOSE_TILE); r += B)
      for (int64_t c = c0; c < std::min(cols, c0 + TRANSPOSE_TILE); c += B)
        transpose_block(from + r * cols + c, cols, to + c * rows + r, rows, std::min(B, rows - r),
                        std::min(B, cols - c));
  }
}

template <typename T>
const Kernels<T>& kernels() {
  static const Kernels<T> table{forward_cl<T>, input_grad_cl<T>, weight_grad_cl<T>,
                                forward_cf<T>, input_grad_cf<T>, weight_grad_cf<T>, transpose<T>,
                                Vectorized<T>::size()};
  return table;
}

const Kernels<float>& float_kernels() { return kernels<float>(); }
const Kernels<double>& double_kernels() { return kernels<double>(); }

}  // namespace CPU_CAPABILITY
}  // namespace groupconv_native
