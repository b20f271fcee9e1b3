// AMGT's fused multi-tensor step on CPU (float32 and float64): one call steps a whole list of tensors.
//
// Rounding: torch's CPU kernels (built with FMA contraction) compute addcmul as fma(value·t1, t2, self),
// add(a, b, alpha) as fma(alpha, b, a) and lerp as fma(w, end - self, self); this file is compiled with
// -ffp-contract=off and calls std::fma exactly where they do, so each operation rounds as torch's.
//
// Built on first use by amgt/_fused.py with the system C++ compiler (no torch headers, so it compiles in
// about a second) and called through ctypes. The arithmetic is the eager loop's (amgt/_functional.py),
// operation for operation and in the same order, with every scalar rounded to the tensor's dtype where
// the eager code passes it as a Python number; only the per-tensor norm is summed differently (in double,
// in fixed chunks), so results agree with the loop path to float32 round-off.
//
// Per tensor, two passes over memory (the threshold needs the whole tensor's update RMS first):
//   pass 1: v, λ_t, m, u = m̂/(sqrt(v̂)+ε) (+ r), stored in r; Σu² over the finite elements of u
//   pass 2: mask = finite(u) and |u| >= θ; p -= η_t·u·mask; r = u·(1 - mask)
// Pass 2 walks each thread's range backwards, so it starts on the part of r that pass 1 wrote last
// (still in cache). With τ = 0 there is one pass (exactly Adam's operations).
// Sums are taken per fixed chunk of CHUNK elements and added in chunk order: the result does not depend
// on the number of threads.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr int64_t CHUNK = 4096;            // elements per partial sum
constexpr int64_t PARALLEL_MIN = 1 << 15;  // smaller tensors are stepped whole by one thread

// h[] layout (see amgt/_fused.py, _HYPER): must match.
enum { LR, BETA1, BETA2, EPS, WD, GAMMA, TAU, LR_DECAY, DECOUPLED, MAXIMIZE, RELATIVE, N_HYPER };
// acc[] layout (amgt/_diagnostics.py, FIELDS): Σλ, elements with λ, kept, thresholded, non-finite
enum { A_LAM, A_LAM_N, A_KEPT, A_THR_N, A_NONFINITE };

template <typename T>
struct Tensor {
  T* p;
  const T* g;
  T* m;
  T* v;
  T* r;  // nullptr without threshold feedback
  int64_t n;
};

// Step-dependent scalars (as amgt/_functional.py's _Coefficients, in double, then as the eager code
// rounds them to T when it passes them to an operator).
template <typename T>
struct Step {
  int lam;  // 0: λ = 1 (γ = 0 or t = 1); 1: relative; 2: absolute
  bool thr, res, l2, dec, maximize;
  T b1, b2, s1, s2, w;      // β1, β2, 1-β1, 1-β2, lerp weight
  T nvs, ds, gam;           // -var_scale, den_shift, γ (relative) or γ/bc2 (absolute)
  T wd, decay;              // weight decay (L2), 1 - η_t·w (decoupled)
  T sbc2, eps, step;        // τ = 0: sqrt(bc2), ε, -η_t/bc1
  T e, cu, alpha;           // τ > 0: ε·sqrt(bc2), sqrt(bc2)/bc1, -η_t (feedback) or -η_t·sqrt(bc2)/bc1
  double tau;
};

template <typename T>
Step<T> make_step(const double* h, double t, bool has_r) {
  Step<T> s;
  const double lr_t = h[LR] / (1 + h[LR_DECAY] * (t - 1));
  const double bc1 = 1 - std::pow(h[BETA1], t);
  const double bc2 = 1 - std::pow(h[BETA2], t);
  const bool first = t <= 1;
  s.lam = (h[GAMMA] != 0 && !first) ? (h[RELATIVE] != 0 ? 1 : 2) : 0;
  s.thr = h[TAU] != 0;
  s.res = has_r && s.thr;
  s.l2 = h[WD] != 0 && h[DECOUPLED] == 0;
  s.dec = h[WD] != 0 && h[DECOUPLED] != 0;
  s.maximize = h[MAXIMIZE] != 0;
  s.b1 = (T)h[BETA1];
  s.b2 = (T)h[BETA2];
  s.s1 = (T)(1 - h[BETA1]);
  s.s2 = (T)(1 - h[BETA2]);
  s.w = s.s1;
  s.nvs = s.ds = s.gam = 0;
  if (!first) {
    const double q = std::pow(1 - std::pow(h[BETA1], t - 1), 2.0);
    s.nvs = (T)(-(bc2 / q));
    const double tiny = (double)std::numeric_limits<T>::min();
    const double shift = h[EPS] * h[EPS] * bc2;
    s.ds = (T)(shift > tiny ? shift : tiny);
    s.gam = (T)(h[RELATIVE] != 0 ? h[GAMMA] : h[GAMMA] / bc2);
  }
  s.wd = (T)h[WD];
  s.decay = (T)(1 - lr_t * h[WD]);
  const double sqrt_bc2 = std::pow(bc2, 0.5);
  s.sbc2 = (T)sqrt_bc2;
  s.eps = (T)h[EPS];
  s.step = (T)(-lr_t / bc1);
  s.e = (T)(h[EPS] * sqrt_bc2);
  s.cu = (T)(sqrt_bc2 / bc1);
  s.alpha = s.res ? (T)(-lr_t) : (T)(-lr_t * sqrt_bc2 / bc1);
  s.tau = h[TAU];
  return s;
}


struct Partial {
  double ss = 0, lam = 0;
  int64_t nonfinite = 0, kept = 0;
};

// Pass 1 over [lo, hi) (τ = 0: the whole step). LAM, RES, L2, THR are template arguments and every
// scalar is a local, so the loop body has no branches left and vectorizes; `omp simd` lets the sums be
// kept per vector lane (a fixed order for a given build).
template <typename T, int LAM, bool RES, bool L2, bool THR>
void pass1(const Tensor<T>& x, const Step<T>& s, int64_t lo, int64_t hi, Partial& out) {
  T* __restrict p = x.p;
  const T* __restrict g = x.g;
  T* __restrict m = x.m;
  T* __restrict v = x.v;
  T* __restrict r = x.r;
  const T sign = s.maximize ? T(-1) : T(1);
  const T decay = s.dec ? s.decay : T(1);  // p·1 is p exactly
  // torch's lerp: fmadd(w, end - self, self) for |w| < 0.5, else fmadd(w - 1, end - self, end)
  const bool small = std::fabs(s.w) < T(0.5);
  const T lw = small ? s.w : s.w - T(1);
  const T wd = s.wd, b1 = s.b1, b2 = s.b2, s1 = s.s1, s2 = s.s2, nvs = s.nvs, ds = s.ds, gam = s.gam;
  const T sbc2 = s.sbc2, eps = s.eps, step = s.step, e = s.e, cu = s.cu;
  const T big = std::numeric_limits<T>::max();
  T ss = 0, lam_sum = 0, bad = 0;
#pragma omp simd reduction(+ : ss, lam_sum, bad)
  for (int64_t j = lo; j < hi; ++j) {
    T gj = g[j] * sign;
    if constexpr (L2) gj = std::fma(wd, p[j], gj);  // torch.add(g, p, alpha=w)
    const T vj = std::fma(s2 * gj, gj, v[j] * b2);  // v.mul_(β2).addcmul_(g, g, 1-β2)
    v[j] = vj;
    T mj = m[j];
    if constexpr (LAM == 0) {
      const T base = small ? mj : gj;
      mj = std::fma(lw, gj - mj, base);
    } else {
      T num = std::fma(nvs * mj, mj, vj);
      num = num < T(0) ? T(0) : num;
      T lam;
      if constexpr (LAM == 1) {
        const T den = vj + ds;
        lam = den / std::fma(gam, num, den);
      } else {
        lam = T(1) / (num * gam + T(1));
      }
      mj = std::fma(s1 * gj, lam, mj * b1);
      lam_sum += lam == lam ? lam : T(0);  // Σ over the finite λ (NaN only for a lost element)
    }
    m[j] = mj;
    if constexpr (!THR) {
      const T d = std::sqrt(vj) / sbc2 + eps;
      p[j] = p[j] * decay + (step * mj) / d;
    } else {
      const T d = std::sqrt(vj) + e;
      T u;
      if constexpr (RES) {
        u = r[j] + (cu * mj) / d;
        r[j] = u;
      } else {
        u = mj / d;
      }
      const bool ok = std::fabs(u) <= big;  // finite (vectorizes, unlike std::isfinite)
      ss += ok ? u * u : T(0);
      bad += ok ? T(0) : T(1);
    }
  }
  out.ss += ss;
  out.lam += LAM == 0 ? (double)(hi - lo) : lam_sum;
  out.nonfinite += (int64_t)bad;
}

// Pass 2 over [lo, hi): apply the kept part of u, keep the rest in r.
template <typename T, bool RES>
int64_t pass2(const Tensor<T>& x, const Step<T>& s, T theta, int64_t lo, int64_t hi) {
  T* __restrict p = x.p;
  T* __restrict m = x.m;
  T* __restrict v = x.v;
  T* __restrict r = x.r;
  const T decay = s.dec ? s.decay : T(1);  // p·1 is p exactly
  const T e = s.e, alpha = s.alpha, big = std::numeric_limits<T>::max();
  int32_t kept = 0;  // a chunk has at most CHUNK elements; 32 bits match the float lanes
#pragma omp simd reduction(+ : kept)
  for (int64_t j = lo; j < hi; ++j) {
    T u;
    if constexpr (RES) {
      u = r[j];
    } else {
      u = m[j] / (std::sqrt(v[j]) + e);
    }
    const T a = std::fabs(u);
    const bool keep = (a >= theta) & (a <= big);
    const T pj = p[j] * decay;
    const T upd = std::fma(alpha, u, pj);  // addcmul_(mask, u, value=α) with mask 1
    p[j] = keep ? upd : pj;
    if constexpr (RES) r[j] = keep ? T(0) : u;
    kept += keep;
  }
  return kept;
}

template <typename T>
using Pass1 = void (*)(const Tensor<T>&, const Step<T>&, int64_t, int64_t, Partial&);

template <typename T, int LAM, bool RES, bool L2>
Pass1<T> pick_thr(bool thr) {
  return thr ? pass1<T, LAM, RES, L2, true> : pass1<T, LAM, RES, L2, false>;
}

template <typename T, int LAM, bool RES>
Pass1<T> pick_l2(bool l2, bool thr) {
  return l2 ? pick_thr<T, LAM, RES, true>(thr) : pick_thr<T, LAM, RES, false>(thr);
}

template <typename T, int LAM>
Pass1<T> pick_res(bool res, bool l2, bool thr) {
  return res ? pick_l2<T, LAM, true>(l2, thr) : pick_l2<T, LAM, false>(l2, thr);
}

template <typename T>
Pass1<T> pick_pass1(const Step<T>& s) {
  switch (s.lam) {
    case 1: return pick_res<T, 1>(s.res, s.l2, s.thr);
    case 2: return pick_res<T, 2>(s.res, s.l2, s.thr);
    default: return pick_res<T, 0>(s.res, s.l2, s.thr);
  }
}

template <typename T>
T threshold(const Step<T>& s, double ss, int64_t n, int64_t nonfinite) {
  const int64_t nf = n - nonfinite;  // θ = τ·RMS over the finite elements of u
  const double k = nf > 0 ? s.tau / std::sqrt((double)nf) : std::numeric_limits<double>::infinity();
  return (T)std::sqrt(ss) * (T)k;  // as the loop: float(norm) * float(τ/sqrt(n)); NaN (nothing kept) if nf = 0
}

template <typename T>
struct Task {
  Tensor<T> x;
  Step<T> s;
  Pass1<T> p1;
  int64_t chunks;
  int64_t first_chunk;  // offset into the shared partials (large tensors)
};

// Both passes of one tensor's chunk range [c0, c1), pass 2 backwards; partial sums per chunk.
template <typename T>
void pass1_chunks(const Task<T>& t, int64_t c0, int64_t c1, Partial* parts) {
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t lo = c * CHUNK, hi = lo + CHUNK < t.x.n ? lo + CHUNK : t.x.n;
    t.p1(t.x, t.s, lo, hi, parts[c]);
  }
}

template <typename T>
void pass2_chunks(const Task<T>& t, T theta, int64_t c0, int64_t c1, Partial* parts) {
  for (int64_t c = c1 - 1; c >= c0; --c) {
    const int64_t lo = c * CHUNK, hi = lo + CHUNK < t.x.n ? lo + CHUNK : t.x.n;
    parts[c].kept = t.s.res ? pass2<T, true>(t.x, t.s, theta, lo, hi) : pass2<T, false>(t.x, t.s, theta, lo, hi);
  }
}

template <typename T>
Partial total(const Partial* parts, int64_t n) {
  Partial out;
  for (int64_t c = 0; c < n; ++c) {
    out.ss += parts[c].ss;
    out.lam += parts[c].lam;
    out.nonfinite += parts[c].nonfinite;
    out.kept += parts[c].kept;
  }
  return out;
}

template <typename T>
void step_whole(const Task<T>& t, Partial* parts) {
  pass1_chunks(t, 0, t.chunks, parts);
  if (!t.s.thr) return;
  const Partial sum = total<T>(parts, t.chunks);
  pass2_chunks(t, threshold(t.s, sum.ss, t.x.n, sum.nonfinite), 0, t.chunks, parts);
}

template <typename T>
void run(int64_t count, void* const* ptrs, const int64_t* numel, const double* h, double* acc, int nthreads) {
  std::vector<Task<T>> tasks;
  tasks.reserve(count);
  int64_t all_chunks = 0;
  for (int64_t i = 0; i < count; ++i) {
    float* step = (float*)ptrs[6 * i + 5];
    *step += 1.0f;  // the 0-d float32 step counter, as torch._foreach_add_(state_steps, 1)
    Task<T> t;
    t.x = Tensor<T>{(T*)ptrs[6 * i], (const T*)ptrs[6 * i + 1], (T*)ptrs[6 * i + 2], (T*)ptrs[6 * i + 3],
                    (T*)ptrs[6 * i + 4], numel[i]};
    t.s = make_step<T>(h, (double)*step, t.x.r != nullptr);
    t.p1 = pick_pass1(t.s);
    t.chunks = (t.x.n + CHUNK - 1) / CHUNK;
    t.first_chunk = all_chunks;
    all_chunks += t.chunks;
    if (t.x.n > 0) tasks.push_back(t);
  }
  std::vector<Partial> parts(all_chunks);
  const int64_t ntasks = (int64_t)tasks.size();
#ifdef _OPENMP
  if (nthreads > 1) {
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
      // small tensors: whole, one thread each
#pragma omp for schedule(dynamic, 4) nowait
      for (int64_t i = 0; i < ntasks; ++i)
        if (tasks[i].x.n < PARALLEL_MIN) step_whole(tasks[i], &parts[tasks[i].first_chunk]);
      // large tensors: every thread takes a contiguous range of chunks
      for (int64_t i = 0; i < ntasks; ++i) {
        const Task<T>& t = tasks[i];
        if (t.x.n < PARALLEL_MIN) continue;
        Partial* tp = &parts[t.first_chunk];
        const int64_t c0 = t.chunks * tid / nth, c1 = t.chunks * (tid + 1) / nth;
        pass1_chunks(t, c0, c1, tp);
        if (!t.s.thr) continue;
#pragma omp barrier
        const Partial sum = total<T>(tp, t.chunks);  // same order in every thread
        pass2_chunks(t, threshold(t.s, sum.ss, t.x.n, sum.nonfinite), c0, c1, tp);
      }
    }
  } else
#endif
  {
    for (int64_t i = 0; i < ntasks; ++i) step_whole(tasks[i], &parts[tasks[i].first_chunk]);
  }
  for (const Task<T>& t : tasks) {
    const Partial sum = total<T>(&parts[t.first_chunk], t.chunks);
    acc[A_LAM] += sum.lam;
    acc[A_LAM_N] += (double)t.x.n;
    if (t.s.thr) {
      acc[A_KEPT] += (double)sum.kept;
      acc[A_THR_N] += (double)t.x.n;
      acc[A_NONFINITE] += (double)sum.nonfinite;
    }
  }
}

}  // namespace

extern "C" {

// ptrs: 6 per tensor (param, grad, exp_avg, exp_avg_sq, threshold_residual or NULL, float32 step counter);
// numel: elements per tensor; h: N_HYPER hyperparameters; acc: 5 running diagnostics sums (added to).
int amgt_fused_abi_version() { return 1; }

void amgt_fused_step_f32(int64_t count, void* const* ptrs, const int64_t* numel, const double* h, double* acc,
                         int nthreads) {
  run<float>(count, ptrs, numel, h, acc, nthreads);
}

void amgt_fused_step_f64(int64_t count, void* const* ptrs, const int64_t* numel, const double* h, double* acc,
                         int nthreads) {
  run<double>(count, ptrs, numel, h, acc, nthreads);
}
}
