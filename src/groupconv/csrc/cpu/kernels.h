// The raw kernels' interface: plain pointers and int64 geometry, no ATen types, so the
// per-ISA translation units (isa_<n>_<ISA>.cpp) include nothing but ATen's vec headers.
#pragma once

#include <cstdint>

namespace groupconv_native {

// Every convolution is seen as 3-D: 1-D and 2-D layers get leading unit dims.
// "in" is the forward convolution's input (x), "out" its output (y), whatever the direction.
struct Geometry {
  int64_t N, G, Cg, Og;  // batch, groups, input and output channels per group
  int64_t in[3], out[3], k[3], stride[3], dil[3], pad[3];  // pad: zero padding before, per dim
  int64_t taps() const { return k[0] * k[1] * k[2]; }
  int64_t C() const { return G * Cg; }
  int64_t O() const { return G * Og; }
};

// Packed channel rows are padded to a whole 64 bytes, a multiple of every ISA's vector.
template <typename T>
inline int64_t padded_channels(int64_t c) {
  constexpr int64_t L = 64 / sizeof(T);
  return (c + L - 1) / L * L;
}

// Channels-last kernels rotate lanes (kernels_impl.h, ROTATE) where R = 2 or 4 channels per group in and out
// tile a vector of `lanes`: that R, or 0. Their packed weights come rotated (rotate_packed). At 8 the 8 weight
// loads per tap cost more than the 8 permutes saved (measured on AMD Zen 4 and Intel Xeon: docs/design.md).
inline int64_t cl_rotation(int64_t Dg, int64_t Sg, int64_t lanes) {
  return Dg == Sg && lanes % Dg == 0 && (Dg == 2 || Dg == 4) ? Dg : 0;
}

// Lane l's source under rotation s within groups of r lanes (-r < s < r).
constexpr int64_t rotated_lane(int64_t l, int64_t s, int64_t r) { return l - l % r + (l % r + s + r) % r; }

// Packed weights [K][R][Cpad] (row i, lane d: w[d][i]) -> rotated [K][R][Cpad] (row s, lane d: the weight src
// lane d gives dst lane rotated_lane(d, -s), that is w[rotated_lane(d, -s)][d % R]). Once per call and without a
// division per element: per chunk, with divisions, it was most of a small layer's call (docs/design.md).
template <typename T>
void rotate_packed(const T* packed, T* rotated, int64_t K, int64_t R, int64_t Cpad) {
  for (int64_t t = 0; t < K; ++t)
    for (int64_t s = 0; s < R; ++s)
      for (int64_t d0 = 0; d0 < Cpad; d0 += R)
        for (int64_t j = 0; j < R; ++j)
          rotated[(t * R + s) * Cpad + d0 + j] = packed[(t * R + j) * Cpad + d0 + (j >= s ? j - s : j - s + R)];
}

// A channels-first task covers this many rows of one plane (fewer at its end): enough to amortise
// its set-up over, few enough to share a small batch out across threads.
constexpr int64_t CF_TASK_ROWS = 16;
inline int64_t cf_chunks(int64_t rows) { return (rows + CF_TASK_ROWS - 1) / CF_TASK_ROWS; }

// A kernel computes tasks [begin, end) of its direction; what a task is depends on the kernel.
// Weight-gradient kernels add into `partial`, a private buffer of the caller's chunk.
template <typename T>
struct Kernels {
  // channels-last (N, D, H, W, C): a task is one output row (n, od, oh) or, for the input
  // gradient, one input row (n, id, ih). Weights come packed (see direct.cpp).
  void (*forward_cl)(const Geometry&, const T* x, const T* w_packed, T* y, int64_t, int64_t);
  void (*input_grad_cl)(const Geometry&, const T* gy, const T* w_packed, T* gx, int64_t, int64_t);
  void (*weight_grad_cl)(const Geometry&, const T* x, const T* gy, T* partial, int64_t, int64_t);
  // channels-first (N, C, D, H, W): a task is (n, g, depth, chunk of CF_TASK_ROWS rows) or, for the
  // weight gradient, (n, g).
  void (*forward_cf)(const Geometry&, const T* x, const T* w, T* y, int64_t, int64_t);
  void (*input_grad_cf)(const Geometry&, const T* gy, const T* w, T* gx, int64_t, int64_t);
  void (*weight_grad_cf)(const Geometry&, const T* x, const T* gy, T* partial, int64_t, int64_t);
  // (N, rows, cols) -> (N, cols, rows), both dense: a layout change, channels-first (rows = channels)
  // to channels-last or back. A task is one TRANSPOSE_TILE x TRANSPOSE_TILE tile of one matrix.
  void (*transpose)(const T* src, T* dst, int64_t rows, int64_t cols, int64_t begin, int64_t end);
  int64_t lanes;  // of the ISA's vector of T
};

constexpr int64_t TRANSPOSE_TILE = 64;
inline int64_t transpose_tasks(int64_t n, int64_t rows, int64_t cols) {
  return n * ((rows + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE) * ((cols + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE);
}

#define GROUPCONV_DECLARE_KERNELS(ISA)          \
  namespace ISA {                               \
  const Kernels<float>& float_kernels();        \
  const Kernels<double>& double_kernels();      \
  }

GROUPCONV_DECLARE_KERNELS(DEFAULT)
#if defined(GROUPCONV_X86_KERNELS)
GROUPCONV_DECLARE_KERNELS(AVX2)
GROUPCONV_DECLARE_KERNELS(AVX512)
#endif

}  // namespace groupconv_native
