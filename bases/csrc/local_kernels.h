// The local B-spline kernels' building blocks (included by bspline/csrc/local_contract.cc, which has the
// math and the shapes): the rows of every input grouped by their first column (a counting sort), and the
// register-tiled forward and backward passes over one tile of output columns.
#ifndef KAN_LOCAL_KERNELS_H_
#define KAN_LOCAL_KERNELS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel_chunks.h"

namespace kan {
namespace local {

// The rows of every input grouped by bucket (their first column S), with the values V (and the slopes
// D, when given) copied into that order so the kernels read them sequentially: sorted row k of input i
// is row perm[i][k], with values values_of(i)[k * T .. k * T + T).
struct Buckets {
  std::vector<int32_t> perm, offs;
  std::vector<float> values, slopes;
  int64_t rows = 0, buckets = 0, terms = 0;
  const int32_t* rows_of(int64_t i) const { return perm.data() + i * rows; }
  const int32_t* offsets_of(int64_t i) const { return offs.data() + i * (buckets + 1); }
  const float* values_of(int64_t i) const { return values.data() + i * rows * terms; }
  const float* slopes_of(int64_t i) const { return slopes.data() + i * rows * terms; }
};

// One input's rows by a counting sort: offs[s] .. offs[s + 1] is bucket s. Returns false if a start is
// outside [0, buckets). `fill` is scratch of `buckets` entries.
template <int T>
bool bucket_input(const int32_t* S, const float* V, const float* D, int64_t rows, int64_t buckets,
                  int32_t* perm, int32_t* offs, float* values, float* slopes, int32_t* fill) {
  std::fill(offs, offs + buckets + 1, 0);
  for (int64_t b = 0; b < rows; ++b) {
    const int32_t s = S[b];
    if (s < 0 || s >= buckets) return false;
    ++offs[s + 1];
  }
  for (int64_t s = 0; s < buckets; ++s) offs[s + 1] += offs[s];
  std::copy(offs, offs + buckets, fill);
  for (int64_t b = 0; b < rows; ++b) {
    const int32_t k = fill[S[b]]++;
    perm[k] = static_cast<int32_t>(b);
    std::memcpy(values + k * T, V + b * T, sizeof(float) * T);
    if (D != nullptr) std::memcpy(slopes + k * T, D + b * T, sizeof(float) * T);
  }
  return true;
}

// Buckets for every input, built in parallel (D may be null); false if any start is out of range.
template <int T, typename Pool>
bool build_buckets(Pool& pool, const int32_t* S, const float* V, const float* D, int64_t d, int64_t rows,
                   int64_t buckets, Buckets& out) {
  constexpr int64_t terms = T;
  out.rows = rows;
  out.buckets = buckets;
  out.terms = terms;
  out.perm.resize(d * rows);
  out.offs.resize(d * (buckets + 1));
  out.values.resize(d * rows * terms);
  if (D != nullptr) out.slopes.resize(d * rows * terms);
  std::atomic<bool> ok{true};
  const int64_t block = (d + 15) / 16;
  parallel_chunks(pool, (d + block - 1) / block, [&, block](int64_t k) {
    std::vector<int32_t> fill(buckets);
    for (int64_t i = k * block; i < std::min(d, (k + 1) * block); ++i) {
      const int64_t at = i * rows * terms;
      if (!bucket_input<T>(S + i * rows, V + at, D == nullptr ? nullptr : D + at, rows, buckets,
                        out.perm.data() + i * rows, out.offs.data() + i * (buckets + 1),
                        out.values.data() + at, D == nullptr ? nullptr : out.slopes.data() + at,
                        fill.data()))
        ok = false;
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

// ----- shapes and layouts ----------------------------------------------------------------------------
// The caller's weights are W (out, d, n). The kernels read one input's weights as a block of Wp rows
// (Wp = n + 2 pad): row pad + j holds function j, the pad rows are zeros, so a start S in [0, Wp - T]
// always finds T rows. These blocks are built in small local buffers from W as they are needed (never
// a whole converted copy of W, which would cost a pass over memory each way).
struct Dims {
  int64_t d, rows, terms, out, n, pad, Wp, outp;
};

// The edge mask M (out, d) multiplies the weights as they are read and their gradient as it is written.
// block[r, c] = W[o0 + c, i, r - pad] M[o0 + c, i] for c < width (zero outside the functions and past
// out).
inline void load_block(const float* W, const float* M, float* block, int64_t i, int64_t o0, int64_t width,
                       const Dims& m) {
  std::memset(block, 0, sizeof(float) * m.Wp * width);
  const int64_t cols = std::min(width, m.out - o0);
  for (int64_t c = 0; c < cols; ++c) {
    const float* src = W + ((o0 + c) * m.d + i) * m.n;
    const float scale = M[(o0 + c) * m.d + i];
    for (int64_t j = 0; j < m.n; ++j) block[(m.pad + j) * width + c] = src[j] * scale;
  }
}

// dW[o0 + c, i, j] = block[pad + j, c] M[o0 + c, i] for the columns that exist.
inline void store_block(const float* block, const float* M, float* dW, int64_t i, int64_t o0, int64_t width,
                        const Dims& m) {
  const int64_t cols = std::min(width, m.out - o0);
  for (int64_t c = 0; c < cols; ++c) {
    float* dst = dW + ((o0 + c) * m.d + i) * m.n;
    const float scale = M[(o0 + c) * m.d + i];
    for (int64_t j = 0; j < m.n; ++j) dst[j] = block[(m.pad + j) * width + c] * scale;
  }
}

// Output tiles: Y and gY are handled as (outp / 64, rows, 64) tiles so that the rows of one tile are
// contiguous; with rows out * 4 bytes apart (a power of two in the usual shapes) the rows of a column
// block would fall into a few cache sets and evict each other.
constexpr int kVecs = 4;  // vectors per tile row
constexpr int64_t kWidth = kVecs * kLanes;

// Forward for the tile of output columns [o0, o0 + 64): per input and bucket, the bucket's T weight
// rows stay in registers while its rows are accumulated into the tile Yt (rows, 64).
template <int T>
void forward_tile(const Buckets& bk, const float* W, const float* M, float* Yt, float* block, int64_t o0, const Dims& m) {
  std::memset(Yt, 0, sizeof(float) * m.rows * kWidth);
  for (int64_t i = 0; i < m.d; ++i) {
    const int32_t* perm = bk.rows_of(i);
    const int32_t* offs = bk.offsets_of(i);
    const float* Vi = bk.values_of(i);
    load_block(W, M, block, i, o0, kWidth, m);
    for (int64_t s = 0; s < bk.buckets; ++s) {
      if (offs[s] == offs[s + 1]) continue;
      vec c[T][kVecs];
      for (int t = 0; t < T; ++t)
        for (int n = 0; n < kVecs; ++n) c[t][n] = load_vec(block + (s + t) * kWidth + n * kLanes);
      for (int32_t k = offs[s]; k < offs[s + 1]; ++k) {
        const float* v = Vi + k * T;
        float* y = Yt + perm[k] * kWidth;
        vec acc[kVecs];
        for (int n = 0; n < kVecs; ++n) acc[n] = load_vec(y + n * kLanes);
        for (int t = 0; t < T; ++t) {
          const float w = v[t];
          for (int n = 0; n < kVecs; ++n) acc[n] += w * c[t][n];
        }
        for (int n = 0; n < kVecs; ++n) store_vec(y + n * kLanes, acc[n]);
      }
    }
  }
}

// The backward pass runs over tiles of 32 output columns: per bucket, the T weight rows (2 vectors
// each) and the T gradient rows being accumulated all stay in registers.
constexpr int kBackVecs = 2;
constexpr int64_t kBackWidth = kBackVecs * kLanes;
//: Inputs whose partial dX sums are kept while the tiles go by (kBlockInputs * rows vectors).
constexpr int64_t kBlockInputs = 8;

// For inputs [j0, j1) and one gY tile gT (rows, 32) at columns o0: the weight gradient of the tile
// (accumulated in `dblock`, then written to dW) and, per sorted row k, the tile's share of
// dX = <sum_t D_t C[s + t, :], gY[b, :]> added lane-wise to pd[(i - j0) * rows + k].
template <int T>
void backward_tile(const Buckets& bk, const float* W, const float* M, const float* gT, float* dW, float* cblock,
                   float* dblock, vec* pd, int64_t j0, int64_t j1, int64_t o0, const Dims& m) {
  for (int64_t i = j0; i < j1; ++i) {
    const int32_t* perm = bk.rows_of(i);
    const int32_t* offs = bk.offsets_of(i);
    const float* Vi = bk.values_of(i);
    const float* Di = bk.slopes_of(i);
    vec* pdi = pd + (i - j0) * m.rows;
    load_block(W, M, cblock, i, o0, kBackWidth, m);
    std::memset(dblock, 0, sizeof(float) * m.Wp * kBackWidth);
    for (int64_t s = 0; s < bk.buckets; ++s) {
      if (offs[s] == offs[s + 1]) continue;
      vec c[T][kBackVecs], acc[T][kBackVecs] = {};
      for (int t = 0; t < T; ++t)
        for (int n = 0; n < kBackVecs; ++n) c[t][n] = load_vec(cblock + (s + t) * kBackWidth + n * kLanes);
      for (int32_t k = offs[s]; k < offs[s + 1]; ++k) {
        const float* v = Vi + k * T;
        const float* dv = Di + k * T;
        const float* grow = gT + perm[k] * kBackWidth;
        vec g[kBackVecs], eff[kBackVecs];
        for (int n = 0; n < kBackVecs; ++n) {
          g[n] = load_vec(grow + n * kLanes);
          eff[n] = dv[0] * c[0][n];
        }
        for (int t = 1; t < T; ++t)
          for (int n = 0; n < kBackVecs; ++n) eff[n] += dv[t] * c[t][n];
        for (int t = 0; t < T; ++t)
          for (int n = 0; n < kBackVecs; ++n) acc[t][n] += v[t] * g[n];
        vec part = eff[0] * g[0];
        for (int n = 1; n < kBackVecs; ++n) part += eff[n] * g[n];
        pdi[k] += part;
      }
      for (int t = 0; t < T; ++t)
        for (int n = 0; n < kBackVecs; ++n) {
          float* row = dblock + (s + t) * kBackWidth + n * kLanes;
          store_vec(row, load_vec(row) + acc[t][n]);
        }
    }
    store_block(dblock, M, dW, i, o0, kBackWidth, m);
  }
}

}  // namespace local
}  // namespace kan

#endif  // KAN_LOCAL_KERNELS_H_
