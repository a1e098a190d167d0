// The CPU implementation of groupconv_native's operators: operand checks, the output in the
// input's layout, the instruction set chosen once, and the tasks shared out by at::parallel_for.
#include <ATen/Version.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <string>

#include "kernels.h"

namespace groupconv_native {
namespace {

using at::Tensor;
using c10::IntArrayRef;

enum class Isa { DEFAULT, AVX2, AVX512 };

// ATen's own choice (cpuinfo, capped by ATEN_CPU_CAPABILITY), so both run the same instructions.
Isa choose_isa() {
#if defined(GROUPCONV_X86_KERNELS)
  const std::string aten = at::get_cpu_capability();
  if (aten == "AVX512") return Isa::AVX512;
  if (aten == "AVX2") return Isa::AVX2;
#endif
  return Isa::DEFAULT;
}

Isa isa() {
  static const Isa chosen = choose_isa();
  return chosen;
}

template <typename T>
const Kernels<T>& kernels();

template <>
const Kernels<float>& kernels<float>() {
  switch (isa()) {
#if defined(GROUPCONV_X86_KERNELS)
    case Isa::AVX512: return AVX512::float_kernels();
    case Isa::AVX2: return AVX2::float_kernels();
#endif
    default: return DEFAULT::float_kernels();
  }
}

template <>
const Kernels<double>& kernels<double>() {
  switch (isa()) {
#if defined(GROUPCONV_X86_KERNELS)
    case Isa::AVX512: return AVX512::double_kernels();
    case Isa::AVX2: return AVX2::double_kernels();
#endif
    default: return DEFAULT::double_kernels();
  }
}

// The layout kernels read and write: channels-last when the tensor is that, not also contiguous, and
// PyTorch's strides rule agrees (groupconv.layouts.memory_format's rule, which the fake implementations use).
bool channels_last(const Tensor& t) {
  if (t.dim() != 4 && t.dim() != 5) return false;
  const at::MemoryFormat cl = t.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
  return !t.is_contiguous() && t.is_contiguous(cl) && t.suggest_memory_format() == cl;
}

at::MemoryFormat format_of(int64_t dim, bool cl) {
  if (!cl) return at::MemoryFormat::Contiguous;
  return dim == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
}

void check_tensor(const char* op, const char* name, const Tensor& t, const Tensor& like);

// `input` (N, C, *S) in the other layout, dense: channels-last when `to_channels_last`, else contiguous.
// PyTorch's own copy between the two runs at 8-27 GB/s here, a plain copy at 50 or more (docs/design.md).
Tensor relayout(const Tensor& input, bool to_channels_last) {
  const char* op = "groupconv_native::relayout";
  check_tensor(op, "input", input, input);
  TORCH_CHECK(input.dim() >= 4, op, ": input of size ", input.sizes(), " has no channels-last layout (4 or 5 dims)");
  const at::MemoryFormat target = format_of(input.dim(), to_channels_last);
  const bool dense_source = to_channels_last ? input.is_contiguous() : channels_last(input);
  if (input.is_contiguous(target) || !dense_source || input.numel() == 0) return input.contiguous(target);
  Tensor output = at::empty(input.sizes(), input.options().memory_format(target));
  const int64_t N = input.size(0), C = input.size(1), P = input.numel() / std::max<int64_t>(1, N * C);
  const int64_t rows = to_channels_last ? C : P, cols = to_channels_last ? P : C;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "groupconv_native::relayout", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* src = input.const_data_ptr<scalar_t>();
    scalar_t* dst = output.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, transpose_tasks(N, rows, cols), 1,
                     [&](int64_t begin, int64_t end) { k.transpose(src, dst, rows, cols, begin, end); });
  });
  return output;
}

void check_list(const char* op, const char* name, IntArrayRef values, int64_t dims, int64_t minimum) {
  TORCH_CHECK(static_cast<int64_t>(values.size()) == dims, op, ": ", name, "=", values, " has ", values.size(),
              " entries; a ", dims, "-D convolution needs ", dims);
  for (int64_t v : values) TORCH_CHECK(v >= minimum, op, ": ", name, "=", values, " must be >= ", minimum);
}

void check_tensor(const char* op, const char* name, const Tensor& t, const Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " is on ", t.device(), "; this kernel runs on CPU tensors");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a strided (dense) tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name, " has dtype ",
              t.scalar_type(), "; float32 and float64 are supported");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(), " but the ",
              "other operand has ", like.scalar_type());
  TORCH_CHECK(t.dim() >= 3 && t.dim() <= 5, op, ": ", name, " of size ", t.sizes(), " has ", t.dim(),
              " dimensions; 1-, 2- and 3-D convolutions take (N, C, *spatial) with 3 to 5");
}

// The geometry of a call as 3-D, after checking that every operand and argument agrees.
// `x_size`/`y_size`: the forward convolution's input and output (N, C, *S) / (N, O, *L).
Geometry geometry(const char* op, IntArrayRef x_size, IntArrayRef y_size, IntArrayRef weight_size, IntArrayRef stride,
                  IntArrayRef pad_before, IntArrayRef pad_after, IntArrayRef dilation, int64_t groups, bool exact) {
  const int64_t dims = static_cast<int64_t>(weight_size.size()) - 2;
  TORCH_CHECK(dims >= 1 && dims <= 3, op, ": weight of size ", weight_size, " must have 3 to 5 dimensions");
  TORCH_CHECK(static_cast<int64_t>(x_size.size()) == dims + 2 && static_cast<int64_t>(y_size.size()) == dims + 2, op,
              ": operands of sizes ", x_size, " and ", y_size, " do not match the ", dims, "-D weight of size ",
              weight_size);
  check_list(op, "stride", stride, dims, 1);
  check_list(op, "dilation", dilation, dims, 1);
  check_list(op, "padding_before", pad_before, dims, 0);
  check_list(op, "padding_after", pad_after, dims, 0);
  TORCH_CHECK(groups >= 1, op, ": groups=", groups, " must be a positive integer");
  const int64_t C = x_size[1], O = weight_size[0];
  TORCH_CHECK(O % groups == 0, op, ": given groups=", groups, ", weight of size ", weight_size, " has ", O,
              " output channels, not divisible by groups");
  TORCH_CHECK(weight_size[1] * groups == C, op, ": given groups=", groups, ", weight of size ", weight_size,
              ", expected input ", x_size, " to have ", weight_size[1] * groups, " channels, but got ", C,
              " channels instead");
  TORCH_CHECK(y_size[1] == O, op, ": grad_output of size ", y_size, " should have ", O, " channels (weight of size ",
              weight_size, ")");
  TORCH_CHECK(x_size[0] == y_size[0], op, ": input of size ", x_size, " and grad_output of size ", y_size,
              " have different batch sizes");
  Geometry g{};
  g.N = x_size[0];
  g.G = groups;
  g.Cg = C / groups;
  g.Og = O / groups;
  for (int64_t d = 0; d < 3; ++d) {
    const int64_t s = d - (3 - dims);  // the caller's dim, or < 0 for an added unit dim
    if (s < 0) {
      g.in[d] = g.out[d] = g.k[d] = g.stride[d] = g.dil[d] = 1;
      g.pad[d] = 0;
      continue;
    }
    g.in[d] = x_size[2 + s];
    g.out[d] = y_size[2 + s];
    g.k[d] = weight_size[2 + s];
    g.stride[d] = stride[s];
    g.dil[d] = dilation[s];
    g.pad[d] = pad_before[s];
    TORCH_CHECK(g.k[d] >= 1, op, ": weight of size ", weight_size, " has an empty kernel");
    // int64 throughout: with these bounds no index below can overflow
    TORCH_CHECK(g.k[d] <= (int64_t(1) << 30) && g.dil[d] <= (int64_t(1) << 30) && g.stride[d] <= (int64_t(1) << 30) &&
                    pad_before[s] <= (int64_t(1) << 40) && pad_after[s] <= (int64_t(1) << 40),
                op, ": kernel, stride, dilation or padding too large");
    const int64_t reach = g.dil[d] * (g.k[d] - 1) + 1;
    const int64_t padded = g.in[d] + pad_before[s] + pad_after[s];
    const int64_t full = padded >= reach ? (padded - reach) / g.stride[d] + 1 : 0;
    TORCH_CHECK(g.in[d] >= 1 && full >= 1, op, ": input of size ", x_size, " padded by (", pad_before[s], ", ",
                pad_after[s], ") is smaller than the kernel's reach ", reach, " in spatial dim ", s);
    if (exact) {
      TORCH_CHECK(g.out[d] == full, op, ": output of size ", y_size, " does not match the convolution of input ",
                  x_size, " (", full, " in spatial dim ", s, ")");
    } else {
      TORCH_CHECK(g.out[d] >= 1 && g.out[d] <= full, op, ": grad_output of size ", y_size, " has ", g.out[d],
                  " positions in spatial dim ", s, " but the convolution of input ", x_size, " has ", full);
    }
  }
  return g;
}

int64_t grain(int64_t tasks, int64_t work_per_task) {
  // at least ~64k multiply-adds per chunk, so a small call stays on the calling thread
  return std::max<int64_t>(1, std::min<int64_t>(tasks, (int64_t(1) << 16) / std::max<int64_t>(1, work_per_task)));
}

// Packed weights [K][rows][lanes padded] as the channels-last kernels read them: rotated where they rotate
// lanes by `rows` (dst and src channels per group; cl_rotation).
template <typename T>
Tensor rotated_if(Tensor packed, int64_t Dg, int64_t Sg) {
  const int64_t R = cl_rotation(Dg, Sg, kernels<T>().lanes);
  if (R == 0) return packed;
  Tensor rotated = at::empty_like(packed);
  rotate_packed(packed.const_data_ptr<T>(), rotated.mutable_data_ptr<T>(), packed.size(0), R, packed.size(2));
  return rotated;
}

// (O, Cg, K) -> [K][Cg][O padded to the lanes]: the lanes of a channels-last forward's weight load.
template <typename T>
Tensor pack_forward(const Tensor& w, const Geometry& g) {
  const int64_t O = g.O(), Opad = padded_channels<T>(O);
  Tensor packed = at::zeros({g.taps(), g.Cg, Opad}, w.options());
  packed.narrow(2, 0, O).copy_(w.reshape({O, g.Cg, g.taps()}).permute({2, 1, 0}));
  return rotated_if<T>(packed, g.Og, g.Cg);
}

// (G*Og, Cg, K) -> [K][Og][C padded]: lane c = g*Cg+i of row j holds w[g*Og+j, i, tap].
template <typename T>
Tensor pack_input_grad(const Tensor& w, const Geometry& g) {
  const int64_t C = g.C(), Cpad = padded_channels<T>(C);
  Tensor packed = at::zeros({g.taps(), g.Og, Cpad}, w.options());
  packed.narrow(2, 0, C).view({g.taps(), g.Og, g.G, g.Cg}).copy_(
      w.reshape({g.G, g.Og, g.Cg, g.taps()}).permute({3, 1, 0, 2}));
  return rotated_if<T>(packed, g.Cg, g.Og);
}

Tensor conv_forward(const Tensor& input, const Tensor& weight, IntArrayRef stride, IntArrayRef pad_before,
                    IntArrayRef pad_after, IntArrayRef dilation, int64_t groups) {
  const char* op = "groupconv_native::conv_forward";
  check_tensor(op, "input", input, weight);
  check_tensor(op, "weight", weight, input);
  TORCH_CHECK(input.dim() == weight.dim(), op, ": input of size ", input.sizes(), " and weight of size ",
              weight.sizes(), " have different numbers of dimensions");
  std::vector<int64_t> y_size(input.sizes().begin(), input.sizes().end());
  y_size[1] = weight.size(0);
  for (int64_t s = 0; s + 2 < input.dim(); ++s) {
    const int64_t padded = input.size(2 + s) + (s < (int64_t)pad_before.size() ? pad_before[s] : 0) +
                           (s < (int64_t)pad_after.size() ? pad_after[s] : 0);
    const int64_t reach = (s < (int64_t)dilation.size() ? dilation[s] : 1) * (weight.size(2 + s) - 1) + 1;
    const int64_t st = s < (int64_t)stride.size() && stride[s] > 0 ? stride[s] : 1;
    y_size[2 + s] = padded >= reach ? (padded - reach) / st + 1 : 0;
  }
  const Geometry g = geometry(op, input.sizes(), y_size, weight.sizes(), stride, pad_before, pad_after, dilation,
                              groups, true);
  const bool cl = channels_last(input);
  const Tensor x = cl ? input : input.contiguous();
  const Tensor w = weight.contiguous();
  Tensor y = at::empty(y_size, input.options().memory_format(format_of(input.dim(), cl)));
  if (y.numel() == 0) return y;
  const int64_t macs = g.Cg * g.taps();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "groupconv_native::conv_forward", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (cl) {
      const Tensor packed = pack_forward<scalar_t>(w, g);
      const scalar_t* wp = packed.const_data_ptr<scalar_t>();
      const int64_t tasks = g.N * g.out[0] * g.out[1];
      at::parallel_for(0, tasks, grain(tasks, g.out[2] * g.O() * macs),
                       [&](int64_t b, int64_t e) { k.forward_cl(g, xp, wp, yp, b, e); });
    } else {
      const scalar_t* wp = w.const_data_ptr<scalar_t>();
      const int64_t tasks = g.N * g.G * g.out[0] * cf_chunks(g.out[1]);
      at::parallel_for(0, tasks, grain(tasks, std::min(g.out[1], CF_TASK_ROWS) * g.out[2] * g.Og * macs),
                       [&](int64_t b, int64_t e) { k.forward_cf(g, xp, wp, yp, b, e); });
    }
  });
  return y;
}

Tensor conv_input_grad(const Tensor& grad_output, const Tensor& weight, IntArrayRef input_size, IntArrayRef stride,
                       IntArrayRef pad_before, IntArrayRef pad_after, IntArrayRef dilation, int64_t groups) {
  const char* op = "groupconv_native::conv_input_grad";
  check_tensor(op, "grad_output", grad_output, weight);
  check_tensor(op, "weight", weight, grad_output);
  TORCH_CHECK(grad_output.dim() == weight.dim(), op, ": grad_output of size ", grad_output.sizes(),
              " and weight of size ", weight.sizes(), " have different numbers of dimensions");
  TORCH_CHECK(static_cast<int64_t>(input_size.size()) == weight.dim() - 2, op, ": input_size=", input_size,
              " should have ", weight.dim() - 2, " entries");
  std::vector<int64_t> x_size{grad_output.size(0), weight.size(1) * groups};
  x_size.insert(x_size.end(), input_size.begin(), input_size.end());
  const Geometry g = geometry(op, x_size, grad_output.sizes(), weight.sizes(), stride, pad_before, pad_after,
                              dilation, groups, false);
  const bool cl = channels_last(grad_output);
  const Tensor gy = cl ? grad_output : grad_output.contiguous();
  const Tensor w = weight.contiguous();
  Tensor gx = at::empty(x_size, grad_output.options().memory_format(format_of(grad_output.dim(), cl)));
  if (gx.numel() == 0) return gx;
  const int64_t macs = g.Og * g.taps();
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "groupconv_native::conv_input_grad", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    if (cl) {
      const Tensor packed = pack_input_grad<scalar_t>(w, g);
      const scalar_t* wp = packed.const_data_ptr<scalar_t>();
      const int64_t tasks = g.N * g.in[0] * g.in[1];
      at::parallel_for(0, tasks, grain(tasks, g.in[2] * g.C() * macs),
                       [&](int64_t b, int64_t e) { k.input_grad_cl(g, gyp, wp, gxp, b, e); });
    } else {
      const scalar_t* wp = w.const_data_ptr<scalar_t>();
      const int64_t tasks = g.N * g.G * g.in[0] * cf_chunks(g.in[1]);
      at::parallel_for(0, tasks, grain(tasks, std::min(g.in[1], CF_TASK_ROWS) * g.in[2] * g.Cg * macs),
                       [&](int64_t b, int64_t e) { k.input_grad_cf(g, gyp, wp, gxp, b, e); });
    }
  });
  return gx;
}

// Tasks [0, tasks) cut into chunks, each summing into a private partial (never a thread id: a
// call inside another parallel region runs inline), then the partials summed.
template <typename F>
Tensor reduce_chunks(int64_t tasks, int64_t work_per_task, IntArrayRef partial_size, const at::TensorOptions& options,
                     const F& run) {
  const int64_t g = grain(tasks, work_per_task);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (tasks + g - 1) / g));
  std::vector<int64_t> size{chunks};
  size.insert(size.end(), partial_size.begin(), partial_size.end());
  Tensor partial = at::zeros(size, options);
  const int64_t stride = partial.numel() / chunks;
  at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) run(c * tasks / chunks, (c + 1) * tasks / chunks, partial, c * stride);
  });
  return chunks == 1 ? partial[0] : partial.sum(0);
}

Tensor conv_weight_grad(const Tensor& input, const Tensor& grad_output, IntArrayRef kernel_size, IntArrayRef stride,
                        IntArrayRef pad_before, IntArrayRef pad_after, IntArrayRef dilation, int64_t groups) {
  const char* op = "groupconv_native::conv_weight_grad";
  check_tensor(op, "input", input, grad_output);
  check_tensor(op, "grad_output", grad_output, input);
  TORCH_CHECK(input.dim() == grad_output.dim(), op, ": input of size ", input.sizes(), " and grad_output of size ",
              grad_output.sizes(), " have different numbers of dimensions");
  TORCH_CHECK(static_cast<int64_t>(kernel_size.size()) == input.dim() - 2, op, ": kernel_size=", kernel_size,
              " should have ", input.dim() - 2, " entries");
  TORCH_CHECK(groups >= 1 && input.size(1) % groups == 0, op, ": given groups=", groups, ", input of size ",
              input.sizes(), " has ", input.size(1), " channels, not divisible by groups");
  std::vector<int64_t> w_size{grad_output.size(1), input.size(1) / groups};
  w_size.insert(w_size.end(), kernel_size.begin(), kernel_size.end());
  const Geometry g = geometry(op, input.sizes(), grad_output.sizes(), w_size, stride, pad_before, pad_after, dilation,
                              groups, false);
  // both operands channels-last, or both read channels-first
  const bool cl = channels_last(input) && channels_last(grad_output);
  const Tensor x = cl ? input : input.contiguous();
  const Tensor gy = cl ? grad_output : grad_output.contiguous();
  if (g.N == 0 || g.C() == 0 || g.O() == 0) return at::zeros(w_size, input.options());
  Tensor gw;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "groupconv_native::conv_weight_grad", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    const int64_t row = g.out[2] * g.O() * g.Cg * g.taps();
    if (cl) {
      const int64_t Opad = padded_channels<scalar_t>(g.O());
      const int64_t tasks = g.N * g.out[0] * g.out[1];
      Tensor sum = reduce_chunks(tasks, row, {g.taps(), g.Cg, Opad}, x.options(),
                                 [&](int64_t b, int64_t e, Tensor& partial, int64_t offset) {
                                   k.weight_grad_cl(g, xp, gyp, partial.mutable_data_ptr<scalar_t>() + offset, b, e);
                                 });
      gw = sum.narrow(2, 0, g.O()).permute({2, 1, 0}).contiguous().view(w_size);
    } else {
      const int64_t tasks = g.N * g.G;
      Tensor sum = reduce_chunks(tasks, row * g.out[0] * g.out[1] / g.G, {g.O(), g.Cg, g.taps()}, x.options(),
                                 [&](int64_t b, int64_t e, Tensor& partial, int64_t offset) {
                                   k.weight_grad_cf(g, xp, gyp, partial.mutable_data_ptr<scalar_t>() + offset, b, e);
                                 });
      gw = sum.view(w_size);
    }
  });
  return gw.contiguous();
}

}  // namespace

const char* selected_isa() {
  switch (isa()) {
    case Isa::AVX512: return "AVX512";
    case Isa::AVX2: return "AVX2";
    default: return "DEFAULT";
  }
}

TORCH_LIBRARY_IMPL(groupconv_native, CPU, m) {
  m.impl("conv_forward", &conv_forward);
  m.impl("conv_input_grad", &conv_input_grad);
  m.impl("conv_weight_grad", &conv_weight_grad);
  m.impl("relayout", &relayout);
}

}  // namespace groupconv_native
