// A float32 matmul computed by oneDNN, optionally with bfloat16 products and float32 sums
// (oneDNN's fpmath_mode::bf16), as an XLA FFI custom call. XLA's CPU backend in jaxlib 0.10
// does not reach this CPU's AMX tiles under any of its flags; oneDNN does (docs/performance.md).
//
// Operands have equal rank (2-4); the last two axes are the matrices, the leading ones a batch
// in which a size-1 axis broadcasts. transpose_a / transpose_b read an operand's last two axes
// swapped, so the backward pass needs no transposed copies.
#include <omp.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dims = dnnl::memory::dims;

// One OpenMP thread per core the calling thread may run on, asked at every call: a Ray worker
// pins itself to one core after the library may have been loaded, and oneDNN must follow.
static int usable_cores() {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
}

// At most this many threads per call when positive: generation decodes several batches at once
// from threads of its own, and a call each on one core beats them all contending for every core.
static std::atomic<int> threads_per_call{0};

extern "C" void RtaugOnednnSetThreadsPerCall(int n) { threads_per_call.store(n); }

static dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Logical dims and strides of a row-major array, its last two axes swapped if `transpose`.
static void layout(ffi::Span<const int64_t> shape, bool transpose, dims* d, dims* s) {
  const size_t r = shape.size();
  d->assign(shape.begin(), shape.end());
  s->assign(r, 1);
  for (size_t i = r - 1; i-- > 0;) (*s)[i] = (*s)[i + 1] * shape[i + 1];
  if (transpose) {
    std::swap((*d)[r - 1], (*d)[r - 2]);
    std::swap((*s)[r - 1], (*s)[r - 2]);
  }
}

static ffi::Error Matmul(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                         ffi::ResultBuffer<ffi::F32> out, bool transpose_a, bool transpose_b,
                         bool bf16) {
  const size_t r = a.dimensions().size();
  if (r < 2 || r > 4 || b.dimensions().size() != r || out->dimensions().size() != r) {
    return ffi::Error::InvalidArgument("onednn matmul: operands must have equal rank, 2 to 4");
  }
  dims ad, as, bd, bs;
  layout(a.dimensions(), transpose_a, &ad, &as);
  layout(b.dimensions(), transpose_b, &bd, &bs);
  if (ad[r - 1] != bd[r - 2]) {
    return ffi::Error::InvalidArgument("onednn matmul: inner dimensions differ");
  }
  dims cd, cs;
  layout(out->dimensions(), false, &cd, &cs);
  for (size_t i = 0; i + 2 < r; ++i) {
    if ((ad[i] != cd[i] && ad[i] != 1) || (bd[i] != cd[i] && bd[i] != 1)) {
      return ffi::Error::InvalidArgument("onednn matmul: batch axes do not broadcast");
    }
  }
  if (cd[r - 2] != ad[r - 2] || cd[r - 1] != bd[r - 1]) {
    return ffi::Error::InvalidArgument("onednn matmul: result has the wrong shape");
  }
  int threads = usable_cores();
  if (int cap = threads_per_call.load(); cap > 0 && (threads <= 0 || cap < threads)) threads = cap;
  if (threads > 0) omp_set_num_threads(threads);  // this (XLA's) thread's setting
  using dt = dnnl::memory::data_type;
  dnnl::memory::desc a_md(ad, dt::f32, as), b_md(bd, dt::f32, bs), c_md(cd, dt::f32, cs);
  dnnl::primitive_attr attr;
  if (bf16) attr.set_fpmath_mode(dnnl::fpmath_mode::bf16);
  try {
    // oneDNN caches primitives by descriptor: a repeated shape costs a lookup, not a new kernel.
    dnnl::matmul::primitive_desc pd(cpu_engine(), a_md, b_md, c_md, attr);
    dnnl::matmul prim(pd);
    dnnl::memory am(a_md, cpu_engine(), a.typed_data());
    dnnl::memory bm(b_md, cpu_engine(), b.typed_data());
    dnnl::memory cm(c_md, cpu_engine(), out->typed_data());
    dnnl::stream stream(cpu_engine());
    prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn matmul: ") + e.what());
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(RtaugOnednnMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b")
                                  .Attr<bool>("bf16"));
