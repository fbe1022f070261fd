// Local B-spline contraction on the CPU (called from JAX through the XLA FFI by bases.bspline.native).
// Each input i of row b has T consecutive non-zero functions starting at column S[i, b]; the work
// follows those T terms, not the W columns of dense features:
//
//   forward   Y[b, o]     = sum_{i, t} V[i, b, t] C[i, S[i, b] + t, o]
//   backward  dX[i, b]    = sum_o (sum_t D[i, b, t] C[i, S[i, b] + t, o]) gY[b, o]
//             dC[i, c, o] = sum_{b, t : S[i, b] + t = c} V[i, b, t] gY[b, o]
//
// Shapes: V, D (d, rows, T) (D the derivatives of V in x); S (d, rows) with 0 <= S <= W - T; C, dC
// (d, W, out); dX (d, rows). Y comes back and gY goes in as column tiles (out / 64, rows, 64), gY also
// whole (rows, out); out is a multiple of 64 (the caller pads). Rows are grouped by S per input (a
// counting sort), so a group's T weight rows stay in registers while its rows stream past.
// Work is split into chunks taken from a shared counter by the calling thread and XLA's intra-op pool.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Runs body(chunk) for chunk in [0, chunks) on the caller and up to threads - 1 pool workers.
template <typename Pool, typename Body>
void parallel_chunks(Pool& pool, int64_t chunks, Body body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, chunks, body]() {
    for (int64_t c = state->next.fetch_add(1); c < chunks; c = state->next.fetch_add(1)) {
      body(c);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), chunks) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule(decltype(work)(work));
  work();
  // Every chunk taken is being run by a live thread; wait for those to finish.
  while (state->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

// Rows of one input sorted by their first column (a counting sort): perm lists the rows of bucket s at
// perm[offs[s] .. offs[s + 1]). Returns false if a start is outside [0, buckets).
bool bucket_rows(const int32_t* S, int64_t rows, int64_t buckets, int32_t* perm, int32_t* offs) {
  std::fill(offs, offs + buckets + 1, 0);
  for (int64_t b = 0; b < rows; ++b) {
    const int32_t s = S[b];
    if (s < 0 || s >= buckets) return false;
    ++offs[s + 1];
  }
  for (int64_t s = 0; s < buckets; ++s) offs[s + 1] += offs[s];
  std::vector<int32_t> fill(offs, offs + buckets);
  for (int64_t b = 0; b < rows; ++b) perm[fill[S[b]]++] = static_cast<int32_t>(b);
  return true;
}

// The rows of every input grouped by bucket (their first column), with V copied into that order so the
// kernels read it sequentially: row perm[i][k] has values sorted[i][k * T .. k * T + T).
struct Buckets {
  std::vector<int32_t> perm, offs;
  std::vector<float> sorted;
  int64_t rows = 0, buckets = 0, terms = 0;
  const int32_t* rows_of(int64_t i) const { return perm.data() + i * rows; }
  const int32_t* offsets_of(int64_t i) const { return offs.data() + i * (buckets + 1); }
  const float* values_of(int64_t i) const { return sorted.data() + i * rows * terms; }
};

// Buckets for every input, built in parallel; false if any start is out of range.
template <typename Pool>
bool build_buckets(Pool& pool, const int32_t* S, const float* V, int64_t d, int64_t rows, int64_t terms,
                   int64_t buckets, Buckets& out) {
  out.rows = rows;
  out.buckets = buckets;
  out.terms = terms;
  out.perm.resize(d * rows);
  out.offs.resize(d * (buckets + 1));
  out.sorted.resize(d * rows * terms);
  std::atomic<bool> ok{true};
  const int64_t block = (d + 15) / 16;
  parallel_chunks(pool, (d + block - 1) / block, [&, block](int64_t k) {
    for (int64_t i = k * block; i < std::min(d, (k + 1) * block); ++i) {
      int32_t* perm = out.perm.data() + i * rows;
      if (!bucket_rows(S + i * rows, rows, buckets, perm, out.offs.data() + i * (buckets + 1))) {
        ok = false;
        continue;
      }
      const float* v = V + i * rows * terms;
      float* sorted = out.sorted.data() + i * rows * terms;
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(sorted + r * terms, v + perm[r] * terms, sizeof(float) * terms);
    }
  });
  return ok;
}

// 16 floats; GCC lowers it to one AVX-512 register, two AVX registers or four SSE registers.
typedef float vec __attribute__((vector_size(64), aligned(4)));
constexpr int kLanes = 16;

inline vec load_vec(const float* p) { vec v; std::memcpy(&v, p, sizeof(vec)); return v; }
inline void store_vec(float* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
typedef float vec8 __attribute__((vector_size(32), aligned(4)));
typedef float vec4 __attribute__((vector_size(16), aligned(4)));

inline float sum_lanes(vec v) {
  const vec8 s8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const vec4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// Ask for the tile columns [o0, o0 + NV * 16) of rows [0, W) of one input's (W, out) block; the next
// input's rows are fetched while this one's are used (its rows are out * 4 bytes apart, too far apart
// for the hardware prefetcher).
template <int NV>
inline void prefetch_rows(const float* block, int64_t W, int64_t out, int64_t o0) {
  for (int64_t r = 0; r < W; ++r)
    for (int n = 0; n < NV; ++n) __builtin_prefetch(block + r * out + o0 + n * kLanes);
}

// Output tiles: Y and gY travel as (out / width, rows, width) so that the rows of one tile are
// contiguous; with rows out * 4 bytes apart (a power of two in the usual shapes) the rows of a column
// block would fall into a few cache sets and evict each other.

// Forward for one tile of NV * 16 output columns starting at o0: per input and bucket, the bucket's T
// weight rows stay in registers while its rows are accumulated into the tile Yt (rows, NV * 16).
template <int T, int NV>
void forward_tile(const Buckets& bk, const float* C, float* Yt, int64_t o0, int64_t rows,
                  int64_t d, int64_t W, int64_t out) {
  constexpr int width = NV * kLanes;
  std::memset(Yt, 0, sizeof(float) * rows * width);
  for (int64_t i = 0; i < d; ++i) {
    const int32_t* perm = bk.rows_of(i);
    const int32_t* offs = bk.offsets_of(i);
    const float* Vi = bk.values_of(i);
    if (i + 1 < d) prefetch_rows<NV>(C + (i + 1) * W * out, W, out, o0);
    for (int64_t s = 0; s < bk.buckets; ++s) {
      if (offs[s] == offs[s + 1]) continue;
      vec c[T][NV];
      for (int t = 0; t < T; ++t)
        for (int n = 0; n < NV; ++n) c[t][n] = load_vec(C + (i * W + s + t) * out + o0 + n * kLanes);
      for (int32_t k = offs[s]; k < offs[s + 1]; ++k) {
        const float* v = Vi + k * T;
        float* y = Yt + perm[k] * width;
        vec acc[NV];
        for (int n = 0; n < NV; ++n) acc[n] = load_vec(y + n * kLanes);
        for (int t = 0; t < T; ++t) {
          const float w = v[t];
          for (int n = 0; n < NV; ++n) acc[n] += w * c[t][n];
        }
        for (int n = 0; n < NV; ++n) store_vec(y + n * kLanes, acc[n]);
      }
    }
  }
}

// dC for inputs [i0, i1) and the output columns of one gY tile gT (rows, NV * 16) starting at o0:
// a bucket's T rows of dC accumulate in registers.
template <int T, int NV>
void backward_weights(const Buckets& bk, const float* gT, float* dC, int64_t i0,
                      int64_t i1, int64_t o0, int64_t rows, int64_t W, int64_t out) {
  constexpr int width = NV * kLanes;
  for (int64_t i = i0; i < i1; ++i) {
    const int32_t* perm = bk.rows_of(i);
    const int32_t* offs = bk.offsets_of(i);
    const float* Vi = bk.values_of(i);
    if (i + 1 < i1) prefetch_rows<NV>(dC + (i + 1) * W * out, W, out, o0);
    for (int64_t s = 0; s < bk.buckets; ++s) {
      if (offs[s] == offs[s + 1]) continue;
      vec acc[T][NV] = {};
      for (int32_t k = offs[s]; k < offs[s + 1]; ++k) {
        const float* v = Vi + k * T;
        const float* grow = gT + perm[k] * width;
        vec g[NV];
        for (int n = 0; n < NV; ++n) g[n] = load_vec(grow + n * kLanes);
        for (int t = 0; t < T; ++t) {
          const float w = v[t];
          for (int n = 0; n < NV; ++n) acc[t][n] += w * g[n];
        }
      }
      for (int t = 0; t < T; ++t)
        for (int n = 0; n < NV; ++n) {
          float* row = dC + (i * W + s + t) * out + o0 + n * kLanes;
          store_vec(row, load_vec(row) + acc[t][n]);
        }
    }
  }
}

// dX[i, b] = <sum_t D[i, b, t] C[i, S[i, b] + t, :], gY[b, :]> for inputs [i0, i1) (D: the derivatives
// of the T values): rows in their own order, so gY is read sequentially and each of its rows is used by
// a few inputs while it is in L1; one horizontal sum per (input, row).
template <int T>
void backward_inputs(const int32_t* S, const float* D, const float* C, const float* gY, float* dX,
                     int64_t i0, int64_t i1, int64_t rows, int64_t W, int64_t out) {
  constexpr int64_t kInputs = 4;
  for (int64_t j0 = i0; j0 < i1; j0 += kInputs) {
    const int64_t j1 = std::min(i1, j0 + kInputs);
    // The next inputs' weight blocks, a few lines per row of this pass (rows pick them in random order).
    const char* next = reinterpret_cast<const char*>(C + j1 * W * out);
    const int64_t next_lines = (std::min(i1, j1 + kInputs) - j1) * W * out * 4 / 64;
    const int64_t per_row = (next_lines + rows - 1) / rows;
    for (int64_t b = 0; b < rows; ++b) {
      for (int64_t l = b * per_row; l < std::min(next_lines, (b + 1) * per_row); ++l)
        __builtin_prefetch(next + l * 64);
      const float* g = gY + b * out;
      for (int64_t i = j0; i < j1; ++i) {
        const float* c = C + (i * W + S[i * rows + b]) * out;  // rows S .. S + T - 1, each out long
        const float* dv = D + (i * rows + b) * T;
        float w[T];
        for (int t = 0; t < T; ++t) w[t] = dv[t];
        vec dot = {};
        for (int64_t o = 0; o < out; o += kLanes) {
          vec eff = w[0] * load_vec(c + o);
          for (int t = 1; t < T; ++t) eff += w[t] * load_vec(c + t * out + o);
          dot += eff * load_vec(g + o);
        }
        dX[i * rows + b] = sum_lanes(dot);
      }
    }
  }
}

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

constexpr int kForwardVecs = 4;   // 64 output columns per forward block
constexpr int kBackwardVecs = 4;  // 64 per backward block
//: The column count ``out`` must be a multiple of this (the caller pads).
constexpr int64_t kOutMultiple = kForwardVecs * kLanes;

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::S32> S,
                   ffi::Buffer<ffi::F32> C, ffi::ResultBuffer<ffi::F32> Yt) {
  auto vd = V.dimensions(), sd = S.dimensions(), cd = C.dimensions();
  if (vd.size() != 3 || sd.size() != 2 || cd.size() != 3 || sd[0] != vd[0] || sd[1] != vd[1] ||
      cd[0] != vd[0] || cd[1] < vd[2])
    return ffi::Error::InvalidArgument("expected V (d, rows, T), S (d, rows), C (d, W >= T, out)");
  const int64_t d = vd[0], rows = vd[1], terms = vd[2], W = cd[1], out = cd[2];
  if (out % kOutMultiple != 0) return ffi::Error::InvalidArgument("out must be a multiple of 64");
  Buckets bk;
  if (!build_buckets(pool, S.typed_data(), V.typed_data(), d, rows, terms, W - terms + 1, bk))
    return ffi::Error::InvalidArgument("a start column is outside [0, W - T]");
  const float* v = V.typed_data();
  const float* c = C.typed_data();
  float* y = Yt->typed_data();
  const int64_t chunks = out / kOutMultiple;
  bool known = dispatch_terms(terms, [&](auto tc) {
    constexpr int T = decltype(tc)::value;
    if constexpr (T == 0) {
      return false;
    } else {
      parallel_chunks(pool, chunks, [&, c, y](int64_t k) {
        forward_tile<T, kForwardVecs>(bk, c, y + k * rows * kOutMultiple, k * kOutMultiple, rows, d, W,
                                      out);
      });
      return true;
    }
  });
  if (!known) return ffi::Error::InvalidArgument("T (terms per input) must be 2..7");
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::F32> D,
                    ffi::Buffer<ffi::S32> S, ffi::Buffer<ffi::F32> C, ffi::Buffer<ffi::F32> gY,
                    ffi::Buffer<ffi::F32> gT, ffi::ResultBuffer<ffi::F32> dX, ffi::ResultBuffer<ffi::F32> dC) {
  auto vd = V.dimensions(), sd = S.dimensions(), cd = C.dimensions(), gd = gY.dimensions();
  if (vd.size() != 3 || sd.size() != 2 || cd.size() != 3 || gd.size() != 2 || sd[0] != vd[0] ||
      sd[1] != vd[1] || cd[0] != vd[0] || cd[1] < vd[2] || gd[0] != vd[1] || gd[1] != cd[2] ||
      D.element_count() != V.element_count() || gT.element_count() != gY.element_count())
    return ffi::Error::InvalidArgument(
        "expected V and D (d, rows, T), S (d, rows), C (d, W >= T, out), gY (rows, out) and gT (out / 64, "
        "rows, 64)");
  const int64_t d = vd[0], rows = vd[1], terms = vd[2], W = cd[1], out = cd[2];
  if (out % kOutMultiple != 0) return ffi::Error::InvalidArgument("out must be a multiple of 64");
  Buckets bk;
  if (!build_buckets(pool, S.typed_data(), V.typed_data(), d, rows, terms, W - terms + 1, bk))
    return ffi::Error::InvalidArgument("a start column is outside [0, W - T]");
  const float* dv = D.typed_data();
  const int32_t* sp = S.typed_data();
  const float* c = C.typed_data();
  const float* g = gY.typed_data();
  const float* gt = gT.typed_data();
  float* dx = dX->typed_data();
  float* dw = dC->typed_data();
  // A few chunks of inputs per thread: each thread owns its inputs' dC and dX (no shared writes).
  const int64_t block = (d + 7) / 8;
  const int64_t chunks = (d + block - 1) / block;
  bool known = dispatch_terms(terms, [&](auto tc) {
    constexpr int T = decltype(tc)::value;
    if constexpr (T == 0) {
      return false;
    } else {
      parallel_chunks(pool, chunks, [&, dv, sp, c, g, gt, dx, dw, block](int64_t k) {
        const int64_t i0 = k * block, i1 = std::min(d, (k + 1) * block);
        constexpr int64_t width = kOutMultiple;
        std::memset(dw + i0 * W * out, 0, sizeof(float) * (i1 - i0) * W * out);
        for (int64_t o0 = 0; o0 < out; o0 += width)
          backward_weights<T, kBackwardVecs>(bk, gt + (o0 / width) * rows * width, dw, i0, i1, o0, rows,
                                             W, out);
        backward_inputs<T>(sp, dv, c, g, dx, i0, i1, rows, W, out);
      });
      return true;
    }
  });
  if (!known) return ffi::Error::InvalidArgument("T (terms per input) must be 2..7");
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KanLocalForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

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
                                  .Ret<ffi::Buffer<ffi::F32>>());
