// Backward pass of the per-channel safe rational F(x) = P(x) / Q(x) on the CPU in one pass over x and
// the cotangent g (called from JAX through the XLA FFI by bases.kernels.rational_native). The math is
// bases.kernels.rational_math's (KAT, Yang & Wang 2024, for form A):
//
//   xc = clip(x, -1e5, 1e5),  P = sum_i a_i xc^i,  R = P',  F = P / Q
//   form A: Q = 1 + sum_j |b_j| |xc|^j,   dQ/dx = sign(xc) sum_j j |b_j| |xc|^(j-1)
//   form B: T = sum_j b_j xc^j,  Q = 1 + |T|,  dQ/dx = sign(T) T'
//   dx = g (R - dQ/dx F) / Q (0 beyond the clip),  da_i = sum g xc^i / Q,
//   db_j = -sum g F / Q sign(b_j) |xc|^j (A)  or  -sum g F / Q sign(T) xc^j (B)
//
// with sign(v) = +1 for v >= 0, else -1 (JAX's derivative of abs). Shapes: x, g, dx (N, D); per-channel
// coefficients a (D, m + 1), b (D, n); da (D, m + 1), db (D, n). Channels are processed 16 at a time
// (one vector), rows in chunks whose partial sums are added in double precision at the end.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "parallel_chunks.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float vec __attribute__((vector_size(64), aligned(4)));
constexpr int kLanes = 16;
constexpr float kClip = 1.0e5f;
constexpr int64_t kChunkRows = 256;

inline vec load_vec(const float* p) { vec v; std::memcpy(&v, p, sizeof(vec)); return v; }
inline void store_vec(float* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
inline vec sign_pos(vec v) { return v >= 0.0f ? vec{} + 1.0f : vec{} - 1.0f; }
inline vec abs_vec(vec v) { return v >= 0.0f ? v : -v; }

using kan::parallel_chunks;

// Rows [r0, r1) of channels [c0, c0 + 16): dx, and the coefficient sums added to sums (m1 + n vectors).
template <int M1, int N, bool kFormA>
void rational_block(const float* x, const float* g, const float* a, const float* b, float* dx, vec* sums,
                    int64_t r0, int64_t r1, int64_t c0, int64_t D) {
  vec ac[M1], bc[N], sb[N];
  for (int i = 0; i < M1; ++i)
    for (int l = 0; l < kLanes; ++l) ac[i][l] = a[(c0 + l) * M1 + i];
  for (int j = 0; j < N; ++j) {
    for (int l = 0; l < kLanes; ++l) bc[j][l] = b[(c0 + l) * N + j];
    sb[j] = sign_pos(bc[j]);
    if (kFormA) bc[j] = abs_vec(bc[j]);
  }
  vec acc_a[M1] = {}, acc_b[N] = {};
  for (int64_t r = r0; r < r1; ++r) {
    const vec xv = load_vec(x + r * D + c0), gv = load_vec(g + r * D + c0);
    vec xc = xv < -kClip ? vec{} - kClip : xv;
    xc = xc > kClip ? vec{} + kClip : xc;
    // P and R = P' by Horner's rule with its derivative.
    vec p = vec{} + ac[M1 - 1], rr = vec{};
    for (int i = M1 - 2; i >= 0; --i) {
      rr = rr * xc + p;
      p = p * xc + ac[i];
    }
    // S = sum_j c_j t^j (no constant term) and S' with t = |xc| (A) or xc (B), c_j = |b_j| or b_j.
    const vec t = kFormA ? abs_vec(xc) : xc;
    vec s = vec{} + bc[N - 1], ds = vec{};
    for (int j = N - 2; j >= 0; --j) {
      ds = ds * t + s;
      s = s * t + bc[j];
    }
    ds = ds * t + s;  // the last step of t * (...): S = t H(t), S' = H + t H'
    s = s * t;
    vec q, dq, sign_t;
    if (kFormA) {
      q = 1.0f + s;
      dq = sign_pos(xc) * ds;
      sign_t = vec{} + 1.0f;
    } else {
      sign_t = sign_pos(s);
      q = 1.0f + abs_vec(s);
      dq = sign_t * ds;
    }
    const vec inv_q = 1.0f / q;
    const vec f = p * inv_q;
    const vec u = gv * inv_q;
    const vec inside = abs_vec(xv) <= kClip ? vec{} + 1.0f : vec{};
    store_vec(dx + r * D + c0, inside * (u * (rr - dq * f)));
    vec power = u;
    for (int i = 0; i < M1; ++i) {
      acc_a[i] += power;
      power = power * xc;
    }
    const vec w = -u * f * sign_t;
    power = w * t;
    for (int j = 0; j < N; ++j) {
      acc_b[j] += power;
      power = power * t;
    }
  }
  for (int i = 0; i < M1; ++i) sums[i] += acc_a[i];
  for (int j = 0; j < N; ++j) sums[M1 + j] += kFormA ? acc_b[j] * sb[j] : acc_b[j];
}

template <int M1, int N, bool kFormA>
void rational_backward(ffi::ThreadPool& pool, const float* x, const float* g, const float* a, const float* b,
                       float* dx, float* da, float* db, int64_t rows, int64_t D) {
  const int64_t chunks = std::max<int64_t>(1, (rows + kChunkRows - 1) / kChunkRows);
  const int64_t groups = (D + kLanes - 1) / kLanes, full = D / kLanes;
  // Partial sums per chunk: (M1 + N) vectors per channel group.
  std::vector<vec> partial(chunks * groups * (M1 + N));
  parallel_chunks(pool, chunks, [&](int64_t k) {
    const int64_t r0 = k * kChunkRows, r1 = std::min(rows, r0 + kChunkRows);
    vec* mine = partial.data() + k * groups * (M1 + N);
    std::fill(mine, mine + groups * (M1 + N), vec{});
    for (int64_t cg = 0; cg < full; ++cg)
      rational_block<M1, N, kFormA>(x, g, a, b, dx, mine + cg * (M1 + N), r0, r1, cg * kLanes, D);
    if (full < groups) {  // the last channels: through a padded copy of 16 columns
      const int64_t c0 = full * kLanes, width = D - c0;
      std::vector<float> xs(kLanes * (r1 - r0), 0.0f), gs(kLanes * (r1 - r0), 0.0f),
          dxs(kLanes * (r1 - r0)), as(kLanes * M1, 0.0f), bs(kLanes * N, 0.0f);
      for (int64_t r = r0; r < r1; ++r) {
        std::memcpy(xs.data() + (r - r0) * kLanes, x + r * D + c0, sizeof(float) * width);
        std::memcpy(gs.data() + (r - r0) * kLanes, g + r * D + c0, sizeof(float) * width);
      }
      std::memcpy(as.data(), a + c0 * M1, sizeof(float) * width * M1);
      std::memcpy(bs.data(), b + c0 * N, sizeof(float) * width * N);
      rational_block<M1, N, kFormA>(xs.data(), gs.data(), as.data(), bs.data(), dxs.data(),
                                    mine + full * (M1 + N), 0, r1 - r0, 0, kLanes);
      for (int64_t r = r0; r < r1; ++r)
        std::memcpy(dx + r * D + c0, dxs.data() + (r - r0) * kLanes, sizeof(float) * width);
    }
  });
  for (int64_t c = 0; c < D; ++c) {
    const int64_t cg = c / kLanes, l = c % kLanes;
    for (int e = 0; e < M1 + N; ++e) {
      double total = 0.0;
      for (int64_t k = 0; k < chunks; ++k) total += partial[(k * groups + cg) * (M1 + N) + e][l];
      if (e < M1) da[c * M1 + e] = static_cast<float>(total);
      else db[c * N + (e - M1)] = static_cast<float>(total);
    }
  }
}

template <int M1, int N>
void with_form(bool form_a, ffi::ThreadPool& pool, const float* x, const float* g, const float* a,
               const float* b, float* dx, float* da, float* db, int64_t rows, int64_t D) {
  if (form_a) rational_backward<M1, N, true>(pool, x, g, a, b, dx, da, db, rows, D);
  else rational_backward<M1, N, false>(pool, x, g, a, b, dx, da, db, rows, D);
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> X, ffi::Buffer<ffi::F32> G,
                    ffi::Buffer<ffi::F32> A, ffi::Buffer<ffi::F32> B, ffi::ResultBuffer<ffi::F32> dX,
                    ffi::ResultBuffer<ffi::F32> dA, ffi::ResultBuffer<ffi::F32> dB, int64_t form_a) {
  auto xd = X.dimensions(), ad = A.dimensions(), bd = B.dimensions();
  if (xd.size() != 2 || ad.size() != 2 || bd.size() != 2 || G.element_count() != X.element_count() ||
      ad[0] != xd[1] || bd[0] != xd[1])
    return ffi::Error::InvalidArgument("expected x and g (N, D), a (D, m + 1), b (D, n)");
  const int64_t rows = xd[0], D = xd[1], m1 = ad[1], n = bd[1];
  const float *x = X.typed_data(), *g = G.typed_data(), *a = A.typed_data(), *b = B.typed_data();
  float *dx = dX->typed_data(), *da = dA->typed_data(), *db = dB->typed_data();
  // The degree pairs (m + 1, n) compiled (each is one instantiation; keep in step with
  // bases.kernels.rational_native.DEGREES).
  bool known = true;
  const bool fa = form_a != 0;
  if (m1 == 6 && n == 4) with_form<6, 4>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 1 && n == 1) with_form<1, 1>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 2 && n == 1) with_form<2, 1>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 2 && n == 2) with_form<2, 2>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 3 && n == 2) with_form<3, 2>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 4 && n == 3) with_form<4, 3>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 5 && n == 4) with_form<5, 4>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 6 && n == 5) with_form<6, 5>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else if (m1 == 7 && n == 6) with_form<7, 6>(fa, pool, x, g, a, b, dx, da, db, rows, D);
  else known = false;
  if (!known) return ffi::Error::InvalidArgument("degree pair (m + 1, n) not compiled; see rational_native.DEGREES");
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KanRationalBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("form_a"));
