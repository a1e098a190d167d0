// This file is kernels_impl.h compiled for DEFAULT (setup.py sets the flags and CPU_CAPABILITY).
#include "kernels_impl.h"
