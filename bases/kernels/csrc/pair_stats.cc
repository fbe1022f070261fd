// AF-KAN's per-input feature statistics on the CPU (called from JAX through the XLA FFI by
// bases.kernels.pair_stats_native): the forward in one pass over x, the backward in one pass over x and
// the four cotangents. The math is
// bases.activation_pair.pair_feature_stats' (AF-KAN, Ta et al. 2025):
//
//   u_j = x - s_j,  w_j = e_j - x,  a = act(u_j),  b = act(w_j),  f_j = fn(a, b)      (j < K windows)
//   outputs  dot = sum_j v_j f_j,  total = sum_j f_j,  lo = min_j f_j,  hi = max_j f_j
//   g_j = c_dot v_j + c_total + [f_j = lo] c_lo / #lo + [f_j = hi] c_hi / #hi       (ties share equally)
//   dx = sum_j g_j (F_u - F_w),  ds_j = -sum g_j F_u,  de_j = sum g_j F_w,  dv_j = sum c_dot f_j
//
// with F_u = fn_a(a, b) act'(u_j), F_w = fn_b(a, b) act'(w_j). Shapes: x, dx (N, D); the outputs y and
// their cotangents ct (4, N, D) in the order (dot, total, lo, hi); the window points s, e and their gradients (P, K) with
// P = 1 (shared by all inputs) or P = D; v, dv (K). Inputs are processed 16 at a time (one vector), rows
// in chunks whose partial sums are added in double precision at the end. Compiled for the activations
// relu and silu (each costs ~2 s of compile time per machine; the others run XLA's function) and all 7
// function types. SiLU's exponential is Cody and Waite's range reduction with Cephes' expf polynomial.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel_chunks.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float vec __attribute__((vector_size(64), aligned(4)));
typedef int32_t ivec __attribute__((vector_size(64), aligned(4)));
constexpr int kLanes = 16;
constexpr int64_t kChunkRows = 64;
constexpr int kMaxWindows = 16;  // the most windows K served (K is a run-time count: K = 6 compiled
                                  // apart measured no faster)

inline vec load_vec(const float* p) { vec v; std::memcpy(&v, p, sizeof(vec)); return v; }
inline void store_vec(float* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
inline vec splat(float s) { return vec{} + s; }

// exp(x) for x in float range: 2^n p(r), n = round(x / ln 2), r = x - n ln 2 (in two parts).
inline vec exp_vec(vec x) {
  x = x < -87.0f ? splat(-87.0f) : x;
  x = x > 88.0f ? splat(88.0f) : x;
  const float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const vec n = (x * 1.44269504088896341f + kMagic) - kMagic;
  const vec r = x - n * 0.693359375f - n * -2.12194440e-4f;
  vec p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const ivec bits = (__builtin_convertvector(n, ivec) + 127) << 23;
  vec scale;
  std::memcpy(&scale, &bits, sizeof(vec));
  return p * scale;
}

inline vec logistic(vec x) { return 1.0f / (1.0f + exp_vec(-x)); }

// Activations: value and derivative. Codes as bases.kernels.pair_stats_native.ACTIVATION_CODES.
template <int A>
inline void activation(vec u, vec& value, vec& slope) {
  if constexpr (A == 0) {  // relu (derivative 0 at 0, as jax.nn.relu)
    value = u > 0.0f ? u : splat(0.0f);
    slope = u > 0.0f ? splat(1.0f) : splat(0.0f);
  } else {  // silu
    const vec s = logistic(u);
    value = u * s;
    slope = s * (1.0f + u * (1.0f - s));
  }
}

// Function types: f(a, b) and its partials. Codes as bases.kernels.pair_stats_native.FUNCTION_CODES.
template <int F>
inline void combine(vec a, vec b, vec& f, vec& fa, vec& fb) {
  if constexpr (F == 0) {  // quad1 (a b)^2
    const vec t = a * b;
    f = t * t;
    fa = 2.0f * t * b;
    fb = 2.0f * t * a;
  } else if constexpr (F == 1) {  // quad2 a b + a^2 + b^2
    f = a * b + a * a + b * b;
    fa = b + 2.0f * a;
    fb = a + 2.0f * b;
  } else if constexpr (F == 2) {  // sum
    f = a + b;
    fa = splat(1.0f);
    fb = splat(1.0f);
  } else if constexpr (F == 3) {  // prod
    f = a * b;
    fa = b;
    fb = a;
  } else if constexpr (F == 4) {  // sum_prod a + b + a b
    f = a + b + a * b;
    fa = 1.0f + b;
    fb = 1.0f + a;
  } else if constexpr (F == 5) {  // cubic1 (a + b)(a^2 + b^2)
    const vec s = a + b, q = a * a + b * b;
    f = s * q;
    fa = q + 2.0f * a * s;
    fb = q + 2.0f * b * s;
  } else {  // cubic2 (a b)^3
    const vec t = a * b;
    f = t * t * t;
    fa = 3.0f * t * t * b;
    fb = 3.0f * t * t * a;
  }
}

// Window j of one input: f = fn(act(x - s), act(e - x)) and its partials F_u = fn_a act'(x - s),
// F_w = fn_b act'(e - x) (the forward uses f alone; the compiler drops the rest there).
template <int A, int F>
inline void pair_window(vec xv, vec s, vec e, vec& f, vec& fu, vec& fw) {
  vec a, da, b, db, fa, fb;
  activation<A>(xv - s, a, da);
  activation<A>(e - xv, b, db);
  combine<F>(a, b, f, fa, fb);
  fu = fa * da;
  fw = fb * db;
}

struct Dims {
  int64_t rows, D, P, groups;
};

// The window points of input group cg as (K, 16) planes (inputs past D padded with the last one's).
void transpose_points(const float* s, const float* e, const Dims& m, int K, std::vector<float>& sT,
                      std::vector<float>& eT) {
  sT.resize(m.groups * K * kLanes);
  eT.resize(m.groups * K * kLanes);
  for (int64_t cg = 0; cg < m.groups; ++cg)
    for (int j = 0; j < K; ++j)
      for (int l = 0; l < kLanes; ++l) {
        const int64_t c = std::min<int64_t>(cg * kLanes + l, m.D - 1), p = m.P == 1 ? 0 : c;
        sT[(cg * K + j) * kLanes + l] = s[p * K + j];
        eT[(cg * K + j) * kLanes + l] = e[p * K + j];
      }
}

// Rows [r0, r1) of the groups of 16 inputs: block(x, planes, out, c0, stride, plane_stride, r0, r1) on
// each full group in place, and on the last, partial group through padded copies (planes zero past D).
// `planes` are the n_in input planes (rows, D) after x, `out` the n_out output planes.
template <typename Block>
void over_groups(const float* x, const float* planes, int n_in, float* out, int n_out, const Dims& m,
                 int64_t r0, int64_t r1, Block block) {
  const int64_t D = m.D, full = D / kLanes, plane = m.rows * D;
  for (int64_t cg = 0; cg < full; ++cg) block(cg, x, planes, out, cg * kLanes, D, plane, r0, r1);
  if (full == m.groups) return;
  const int64_t c0 = full * kLanes, width = D - c0, n = r1 - r0;
  std::vector<float> xs(kLanes * n, 0.0f), ins(n_in * kLanes * n, 0.0f), outs(n_out * kLanes * n);
  for (int64_t r = r0; r < r1; ++r) {
    std::memcpy(xs.data() + (r - r0) * kLanes, x + r * D + c0, sizeof(float) * width);
    for (int q = 0; q < n_in; ++q)
      std::memcpy(ins.data() + q * kLanes * n + (r - r0) * kLanes, planes + q * plane + r * D + c0,
                  sizeof(float) * width);
  }
  block(full, xs.data(), ins.data(), outs.data(), 0, kLanes, kLanes * n, 0, n);
  for (int64_t r = r0; r < r1; ++r)
    for (int q = 0; q < n_out; ++q)
      std::memcpy(out + q * plane + r * D + c0, outs.data() + q * kLanes * n + (r - r0) * kLanes,
                  sizeof(float) * width);
}

// Forward for rows [r0, r1) of inputs [c0, c0 + 16): the four statistics into the planes of y.
template <int A, int F>
void forward_block(const float* x, float* y, const float* sT, const float* eT, const float* v, int64_t r0,
                   int64_t r1, int64_t c0, int64_t stride, int64_t plane, int k_run) {
  constexpr int kSlots = kMaxWindows;
  const int K = k_run;
  vec s[kSlots], e[kSlots];
  for (int j = 0; j < K; ++j) {
    s[j] = load_vec(sT + j * kLanes);
    e[j] = load_vec(eT + j * kLanes);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t at = r * stride + c0;
    const vec xv = load_vec(x + at);
    vec dot = {}, total = {}, lo = {}, hi = {};
    for (int j = 0; j < K; ++j) {
      vec f, fu, fw;
      pair_window<A, F>(xv, s[j], e[j], f, fu, fw);
      dot += v[j] * f;
      total += f;
      lo = j == 0 ? f : (f < lo ? f : lo);
      hi = j == 0 ? f : (f > hi ? f : hi);
    }
    store_vec(y + at, dot);
    store_vec(y + plane + at, total);
    store_vec(y + 2 * plane + at, lo);
    store_vec(y + 3 * plane + at, hi);
  }
}

template <int A, int F>
void pair_forward(ffi::ThreadPool& pool, const float* x, const float* s, const float* e, const float* v,
                  float* y, const Dims& m, int k_run) {
  const int K = k_run;
  std::vector<float> sT, eT;
  transpose_points(s, e, m, K, sT, eT);
  const int64_t chunks = std::max<int64_t>(1, (m.rows + kChunkRows - 1) / kChunkRows);
  kan::parallel_chunks(pool, chunks, [&](int64_t k) {
    const int64_t r0 = k * kChunkRows, r1 = std::min(m.rows, r0 + kChunkRows);
    over_groups(x, nullptr, 0, y, 4, m, r0, r1,
                [&](int64_t cg, const float* xb, const float*, float* yb, int64_t c0, int64_t stride,
                    int64_t plane, int64_t b0, int64_t b1) {
                  forward_block<A, F>(xb, yb, sT.data() + cg * K * kLanes, eT.data() + cg * K * kLanes,
                                          v, b0, b1, c0, stride, plane, K);
                });
  });
}

// Rows [r0, r1) of inputs [c0, c0 + 16) (x, ct, dx with row stride `stride`, ct planes `plane` apart):
// dx, and the window sums added to acc (3 K vectors: ds, de, dv). sT, eT are the points as (K, 16)
// for these inputs.
template <int A, int F>
void pair_block(const float* x, const float* ct, float* dx, const float* sT, const float* eT,
                const float* v, vec* acc, int64_t r0, int64_t r1, int64_t c0, int64_t stride, int64_t plane,
                int k_run) {
  constexpr int kSlots = kMaxWindows;
  const int K = k_run;
  vec s[kSlots], e[kSlots], ds[kSlots] = {}, de[kSlots] = {}, dv[kSlots] = {};
  for (int j = 0; j < K; ++j) {
    s[j] = load_vec(sT + j * kLanes);
    e[j] = load_vec(eT + j * kLanes);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t at = r * stride + c0;
    const vec xv = load_vec(x + at);
    const vec c_dot = load_vec(ct + at), c_total = load_vec(ct + plane + at);
    const vec c_lo = load_vec(ct + 2 * plane + at), c_hi = load_vec(ct + 3 * plane + at);
    vec f[kSlots], fu[kSlots], fw[kSlots];
    for (int j = 0; j < K; ++j) {
      pair_window<A, F>(xv, s[j], e[j], f[j], fu[j], fw[j]);
    }
    vec lo = f[0], hi = f[0];
    for (int j = 1; j < K; ++j) {
      lo = f[j] < lo ? f[j] : lo;
      hi = f[j] > hi ? f[j] : hi;
    }
    vec n_lo = {}, n_hi = {};
    for (int j = 0; j < K; ++j) {
      n_lo += f[j] == lo ? splat(1.0f) : splat(0.0f);
      n_hi += f[j] == hi ? splat(1.0f) : splat(0.0f);
    }
    const vec share_lo = c_lo / n_lo, share_hi = c_hi / n_hi;
    vec dxv = {};
    for (int j = 0; j < K; ++j) {
      vec g = c_dot * v[j] + c_total;
      g += f[j] == lo ? share_lo : splat(0.0f);
      g += f[j] == hi ? share_hi : splat(0.0f);
      const vec gu = g * fu[j], gw = g * fw[j];
      dxv += gu - gw;
      ds[j] -= gu;
      de[j] += gw;
      dv[j] += c_dot * f[j];
    }
    store_vec(dx + at, dxv);
  }
  for (int j = 0; j < K; ++j) {
    acc[j] += ds[j];
    acc[K + j] += de[j];
    acc[2 * K + j] += dv[j];
  }
}

template <int A, int F>
void pair_backward(ffi::ThreadPool& pool, const float* x, const float* ct, const float* s, const float* e,
                   const float* v, float* dx, float* dsum, float* desum, float* dvsum, const Dims& m,
                   int k_run) {
  const int K = k_run;
  const int64_t rows = m.rows, D = m.D;
  const int64_t chunks = std::max<int64_t>(1, (rows + kChunkRows - 1) / kChunkRows);
  std::vector<float> sT, eT;
  transpose_points(s, e, m, K, sT, eT);
  std::vector<vec> partial(chunks * m.groups * 3 * K);
  kan::parallel_chunks(pool, chunks, [&](int64_t k) {
    const int64_t r0 = k * kChunkRows, r1 = std::min(rows, r0 + kChunkRows);
    vec* mine = partial.data() + k * m.groups * 3 * K;
    std::fill(mine, mine + m.groups * 3 * K, vec{});
    over_groups(x, ct, 4, dx, 1, m, r0, r1,
                [&](int64_t cg, const float* xb, const float* cb, float* db, int64_t c0, int64_t stride,
                    int64_t plane, int64_t b0, int64_t b1) {
                  pair_block<A, F>(xb, cb, db, sT.data() + cg * K * kLanes, eT.data() + cg * K * kLanes,
                                       v, mine + cg * 3 * K, b0, b1, c0, stride, plane, K);
                });
  });
  // Sums over the chunks in double; over the inputs too where the points are shared (P = 1) and for v.
  std::vector<double> ds(m.P * K, 0.0), de(m.P * K, 0.0), dv(K, 0.0);
  for (int64_t c = 0; c < D; ++c) {
    const int64_t cg = c / kLanes, l = c % kLanes, p = m.P == 1 ? 0 : c;
    for (int j = 0; j < K; ++j) {
      double ts = 0.0, te = 0.0, tv = 0.0;
      for (int64_t k = 0; k < chunks; ++k) {
        const vec* acc = partial.data() + (k * m.groups + cg) * 3 * K;
        ts += acc[j][l];
        te += acc[K + j][l];
        tv += acc[2 * K + j][l];
      }
      ds[p * K + j] += ts;
      de[p * K + j] += te;
      dv[j] += tv;
    }
  }
  for (int64_t i = 0; i < m.P * K; ++i) {
    dsum[i] = static_cast<float>(ds[i]);
    desum[i] = static_cast<float>(de[i]);
  }
  for (int j = 0; j < K; ++j) dvsum[j] = static_cast<float>(dv[j]);
}

template <int N>
using Int = std::integral_constant<int, N>;

// body(Int<A>, Int<F>) for the activation and function codes where 1 <= K <= kMaxWindows; false where
// the codes or K are not served.
template <int A, typename Body>
bool with_function(int64_t fn, Body body) {
  switch (fn) {
    case 0: body(Int<A>{}, Int<0>{}); return true;
    case 1: body(Int<A>{}, Int<1>{}); return true;
    case 2: body(Int<A>{}, Int<2>{}); return true;
    case 3: body(Int<A>{}, Int<3>{}); return true;
    case 4: body(Int<A>{}, Int<4>{}); return true;
    case 5: body(Int<A>{}, Int<5>{}); return true;
    case 6: body(Int<A>{}, Int<6>{}); return true;
    default: return false;
  }
}

template <typename Body>
bool dispatch(int64_t act, int64_t fn, int64_t K, Body body) {
  if (K < 1 || K > kMaxWindows) return false;
  switch (act) {
    case 0: return with_function<0>(fn, body);
    case 1: return with_function<1>(fn, body);
    default: return false;
  }
}

// x (N, D), points (P, K) with P = 1 or D, v (K): the Dims, or an error.
bool check_dims(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> sd, ffi::Span<const int64_t> ed,
                int64_t v_count, Dims& m) {
  if (xd.size() != 2 || sd.size() != 2 || ed.size() != 2 || sd[0] != ed[0] || sd[1] != ed[1] ||
      v_count != sd[1] || (sd[0] != 1 && sd[0] != xd[1]) || xd[1] < 1)
    return false;
  m = Dims{xd[0], xd[1], sd[0], (xd[1] + kLanes - 1) / kLanes};
  return true;
}

const char* kNotServed =
    "activation, function type or window count not compiled; see bases.kernels.pair_stats_native";

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> X, ffi::Buffer<ffi::F32> S,
                   ffi::Buffer<ffi::F32> E, ffi::Buffer<ffi::F32> V, ffi::ResultBuffer<ffi::F32> Y,
                   int64_t activation_code, int64_t function_code) {
  Dims m;
  if (!check_dims(X.dimensions(), S.dimensions(), E.dimensions(), V.element_count(), m) ||
      Y->element_count() != 4 * X.element_count())
    return ffi::Error::InvalidArgument("expected x (N, D), points (1 or D, K), v (K), y (4, N, D)");
  const int64_t K = S.dimensions()[1];
  const float *x = X.typed_data(), *s = S.typed_data(), *e = E.typed_data(), *v = V.typed_data();
  float* y = Y->typed_data();
  const bool known = dispatch(activation_code, function_code, K, [&](auto a, auto f) {
    pair_forward<decltype(a)::value, decltype(f)::value>(pool, x, s, e, v, y, m, int(K));
  });
  return known ? ffi::Error::Success() : ffi::Error::InvalidArgument(kNotServed);
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> X, ffi::Buffer<ffi::F32> S,
                    ffi::Buffer<ffi::F32> E, ffi::Buffer<ffi::F32> V, ffi::Buffer<ffi::F32> CT,
                    ffi::ResultBuffer<ffi::F32> dX, ffi::ResultBuffer<ffi::F32> dS,
                    ffi::ResultBuffer<ffi::F32> dE, ffi::ResultBuffer<ffi::F32> dV, int64_t activation_code,
                    int64_t function_code) {
  Dims m;
  if (!check_dims(X.dimensions(), S.dimensions(), E.dimensions(), V.element_count(), m) ||
      CT.element_count() != 4 * X.element_count())
    return ffi::Error::InvalidArgument("expected x (N, D), points (1 or D, K), v (K), ct (4, N, D)");
  const int64_t K = S.dimensions()[1];
  const float *x = X.typed_data(), *s = S.typed_data(), *e = E.typed_data(), *v = V.typed_data(),
              *ct = CT.typed_data();
  float *dx = dX->typed_data(), *ds = dS->typed_data(), *de = dE->typed_data(), *dv = dV->typed_data();
  const bool known = dispatch(activation_code, function_code, K, [&](auto a, auto f) {
    pair_backward<decltype(a)::value, decltype(f)::value>(pool, x, ct, s, e, v, dx, ds,
                                                                               de, dv, m, int(K));
  });
  return known ? ffi::Error::Success() : ffi::Error::InvalidArgument(kNotServed);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KanPairStatsForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("activation_code")
                                  .Attr<int64_t>("function_code"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KanPairStatsBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("activation_code")
                                  .Attr<int64_t>("function_code"));
