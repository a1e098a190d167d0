// groupconv's native operators: the schemas (device-independent), and the Python module
// `groupconv._C` whose import registers them. Kernels: cpu/direct.cpp.
#include <Python.h>
#include <torch/library.h>

// Direct convolution for narrow groups, the three directions of one bilinear op.
// padding_before/padding_after: zero padding on each side of every spatial dim.
TORCH_LIBRARY(groupconv_native, m) {
  m.def(
      "conv_forward(Tensor input, Tensor weight, int[] stride, int[] padding_before, int[] padding_after, "
      "int[] dilation, int groups) -> Tensor");
  m.def(
      "conv_input_grad(Tensor grad_output, Tensor weight, int[] input_size, int[] stride, int[] padding_before, "
      "int[] padding_after, int[] dilation, int groups) -> Tensor");
  m.def(
      "conv_weight_grad(Tensor input, Tensor grad_output, int[] kernel_size, int[] stride, int[] padding_before, "
      "int[] padding_after, int[] dilation, int groups) -> Tensor");
  // The same values channels-last (or back to contiguous): a layer's boundary in the other layout.
  m.def("relayout(Tensor input, bool channels_last) -> Tensor");
}

namespace groupconv_native {
const char* selected_isa();
}

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C",
                             "groupconv's native kernels: importing registers torch.ops.groupconv_native.", -1};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddStringConstant(m, "isa", groupconv_native::selected_isa()) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
