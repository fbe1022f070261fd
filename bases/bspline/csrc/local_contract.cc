// Local B-spline contraction on the CPU (called from JAX through the XLA FFI by bases.bspline.native).
// Each input i of row b has T consecutive non-zero functions starting at column S[i, b]; the work
// follows those T terms, not the W columns of dense features:
//
//   forward   Y[b, o]     = sum_{i, t} V[i, b, t] C[i, S[i, b] + t, o]
//   backward  dX[i, b]    = sum_o (sum_t D[i, b, t] C[i, S[i, b] + t, o]) gY[b, o]
//             dC[i, c, o] = sum_{b, t : S[i, b] + t = c} V[i, b, t] gY[b, o]
//
// C[i, :, :] is input i's block of Wp = n + 2 pad rows built from the caller's weights W (out, d, n)
// and edge mask M (out, d): row pad + j holds function j times the mask, the pad rows are zeros.
// Shapes: V, D (d, rows, T) (D the derivatives of V in x); S (d, rows) with 0 <= S <= Wp - T;
// W, dW (out, d, n); Y, gY (rows, out); dX (d, rows). Rows are grouped by S per input (a counting
// sort), so a group's T weight rows stay in registers while its rows stream past.
// Work is split into chunks taken from a shared counter by the calling thread and XLA's intra-op pool.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "local_kernels.h"
#include "parallel_chunks.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using kan::parallel_chunks;
using namespace kan::local;

// Calls f with std::integral_constant<int, terms> for 2..7 terms, else with 0.
template <typename F>
auto dispatch_terms(int64_t terms, F f) {
  switch (terms) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// ----- scratch reused across calls --------------------------------------------------------------------
// Buffers keep their capacity between calls, so the large ones are not mapped afresh (and page-faulted
// in again) by the allocator on every call. At most kKeptWorkspaces are kept.
struct Workspace {
  Buckets bk;
  std::vector<float> grad_tiles, y_tiles, blocks;
  std::vector<vec> partial;
};

template <typename T>
T* sized(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

constexpr size_t kKeptWorkspaces = 2;

class Lease {
 public:
  Lease() {
    std::lock_guard<std::mutex> hold(mutex());
    if (!kept().empty()) {
      ws_ = std::move(kept().back());
      kept().pop_back();
    } else {
      ws_ = std::make_unique<Workspace>();
    }
  }
  ~Lease() {
    std::lock_guard<std::mutex> hold(mutex());
    if (kept().size() < kKeptWorkspaces) kept().push_back(std::move(ws_));
  }
  Workspace& operator*() { return *ws_; }

 private:
  static std::mutex& mutex() { static std::mutex m; return m; }
  static std::vector<std::unique_ptr<Workspace>>& kept() {
    static std::vector<std::unique_ptr<Workspace>> v;
    return v;
  }
  std::unique_ptr<Workspace> ws_;
};

// Ranges of [0, total) in about `chunks` pieces, run by parallel_chunks.
template <typename Body>
void over_ranges(ffi::ThreadPool& pool, int64_t total, int64_t chunks, Body body) {
  const int64_t size = std::max<int64_t>(1, (total + chunks - 1) / chunks);
  parallel_chunks(pool, (total + size - 1) / size,
                  [&, size](int64_t k) { body(k, k * size, std::min(total, (k + 1) * size)); });
}

Dims dims_of(ffi::Buffer<ffi::F32>& V, ffi::Buffer<ffi::F32>& W, int64_t pad) {
  auto vd = V.dimensions(), wd = W.dimensions();
  Dims m{};
  if (vd.size() != 3 || wd.size() != 3 || wd[1] != vd[0]) return m;  // terms = 0: rejected below
  m.d = vd[0];
  m.rows = vd[1];
  m.terms = vd[2];
  m.out = wd[0];
  m.n = wd[2];
  m.pad = pad;
  m.Wp = m.n + 2 * pad;
  m.outp = (m.out + kWidth - 1) / kWidth * kWidth;
  return m;
}

ffi::Error check_inputs(const Dims& m, ffi::Buffer<ffi::S32>& S) {
  auto sd = S.dimensions();
  if (m.terms < 2 || m.terms > 7)
    return ffi::Error::InvalidArgument("expected V (d, rows, T) with 2 <= T <= 7 and W (out, d, n)");
  if (sd.size() != 2 || sd[0] != m.d || sd[1] != m.rows)
    return ffi::Error::InvalidArgument("S must be (d, rows) like V");
  if (m.pad < m.terms - 1) return ffi::Error::InvalidArgument("pad must be at least T - 1");
  return ffi::Error::Success();
}

// ----- handlers --------------------------------------------------------------------------------------
const char kBadStart[] = "a start column is outside [0, n + 2 pad - T]";

template <int T>
ffi::Error forward_impl(ffi::ThreadPool& pool, const float* v, const int32_t* sp, const float* w,
                        const float* mask, float* y,
                        const Dims& m) {
  Lease lease;
  Workspace& ws = *lease;
  if (!build_buckets<T>(pool, sp, v, nullptr, m.d, m.rows, m.Wp - T + 1, ws.bk))
    return ffi::Error::InvalidArgument(kBadStart);
  const int64_t tiles = m.outp / kWidth;
  float* yt = sized(ws.y_tiles, m.rows * m.outp);
  float* blocks = sized(ws.blocks, tiles * m.Wp * kWidth);
  parallel_chunks(pool, tiles, [&](int64_t k) {
    const int64_t o0 = k * kWidth, width = std::min(kWidth, m.out - o0);
    float* tile = yt + k * m.rows * kWidth;
    forward_tile<T>(ws.bk, w, mask, tile, blocks + k * m.Wp * kWidth, o0, m);
    for (int64_t b = 0; b < m.rows; ++b) std::memcpy(y + b * m.out + o0, tile + b * kWidth, sizeof(float) * width);
  });
  return ffi::Error::Success();
}

template <int T>
ffi::Error backward_impl(ffi::ThreadPool& pool, const float* v, const float* dv, const int32_t* sp,
                         const float* w, const float* mask, const float* g, float* dx, float* dw,
                         const Dims& m) {
  Lease lease;
  Workspace& ws = *lease;
  if (!build_buckets<T>(pool, sp, v, dv, m.d, m.rows, m.Wp - T + 1, ws.bk))
    return ffi::Error::InvalidArgument(kBadStart);
  const int64_t tiles = m.outp / kBackWidth;
  float* gtiles = sized(ws.grad_tiles, m.rows * m.outp);
  // gY as (outp / 32, rows, 32) tiles, zero past out.
  over_ranges(pool, m.rows, 16, [&](int64_t, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t t = 0; t < tiles; ++t) {
        float* dst = gtiles + (t * m.rows + b) * kBackWidth;
        const int64_t cols = std::max<int64_t>(0, std::min(kBackWidth, m.out - t * kBackWidth));
        std::memcpy(dst, g + b * m.out + t * kBackWidth, sizeof(float) * cols);
        std::fill(dst + cols, dst + kBackWidth, 0.0f);
      }
  });
  constexpr int64_t kChunks = 8;
  const int64_t block_size = m.Wp * kBackWidth;
  float* blocks = sized(ws.blocks, kChunks * 2 * block_size);
  vec* partial = sized(ws.partial, kChunks * kBlockInputs * m.rows);
  // Each chunk owns its inputs' slices of dX and dW.
  over_ranges(pool, m.d, kChunks, [&](int64_t k, int64_t i0, int64_t i1) {
    float* cblock = blocks + 2 * k * block_size;
    vec* pd = partial + k * kBlockInputs * m.rows;
    for (int64_t j0 = i0; j0 < i1; j0 += kBlockInputs) {
      const int64_t j1 = std::min(i1, j0 + kBlockInputs);
      std::fill(pd, pd + (j1 - j0) * m.rows, vec{});
      for (int64_t t = 0; t < tiles; ++t)
        backward_tile<T>(ws.bk, w, mask, gtiles + t * m.rows * kBackWidth, dw, cblock, cblock + block_size, pd, j0,
                         j1, t * kBackWidth, m);
      for (int64_t i = j0; i < j1; ++i) {
        const int32_t* perm = ws.bk.rows_of(i);
        for (int64_t r = 0; r < m.rows; ++r) dx[i * m.rows + perm[r]] = sum_lanes(pd[(i - j0) * m.rows + r]);
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error check_mask(const Dims& m, ffi::Buffer<ffi::F32>& M) {
  auto md = M.dimensions();
  if (md.size() != 2 || md[0] != m.out || md[1] != m.d) return ffi::Error::InvalidArgument("M must be (out, d)");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::S32> S,
                   ffi::Buffer<ffi::F32> W, ffi::Buffer<ffi::F32> M, ffi::ResultBuffer<ffi::F32> Y, int64_t pad) {
  const Dims m = dims_of(V, W, pad);
  if (auto err = check_inputs(m, S); err.failure()) return err;
  if (auto err = check_mask(m, M); err.failure()) return err;
  return dispatch_terms(m.terms, [&](auto tc) -> ffi::Error {
    constexpr int T = decltype(tc)::value;
    if constexpr (T == 0) {
      return ffi::Error::InvalidArgument("T must be 2..7");
    } else {
      return forward_impl<T>(pool, V.typed_data(), S.typed_data(), W.typed_data(), M.typed_data(),
                             Y->typed_data(), m);
    }
  });
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::F32> D,
                    ffi::Buffer<ffi::S32> S, ffi::Buffer<ffi::F32> W, ffi::Buffer<ffi::F32> M,
                    ffi::Buffer<ffi::F32> gY, ffi::ResultBuffer<ffi::F32> dX, ffi::ResultBuffer<ffi::F32> dW,
                    int64_t pad) {
  const Dims m = dims_of(V, W, pad);
  if (auto err = check_inputs(m, S); err.failure()) return err;
  if (auto err = check_mask(m, M); err.failure()) return err;
  auto gd = gY.dimensions();
  if (D.element_count() != V.element_count() || gd.size() != 2 || gd[0] != m.rows || gd[1] != m.out)
    return ffi::Error::InvalidArgument("expected D like V and gY (rows, out)");
  return dispatch_terms(m.terms, [&](auto tc) -> ffi::Error {
    constexpr int T = decltype(tc)::value;
    if constexpr (T == 0) {
      return ffi::Error::InvalidArgument("T must be 2..7");
    } else {
      return backward_impl<T>(pool, V.typed_data(), D.typed_data(), S.typed_data(), W.typed_data(),
                              M.typed_data(), gY.typed_data(), dX->typed_data(), dW->typed_data(), m);
    }
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KanLocalForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("pad"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KanLocalBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("pad"));
