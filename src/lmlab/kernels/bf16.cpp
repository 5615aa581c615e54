// `lmlab::bf16_rows`: a few rows of activations [M, K] (fp32 or bf16) times bf16 weights [N, K],
// plus an optional bias [N], for decoding (M = 1) on a CPU without native bf16; built on first use
// by lmlab/kernels/__init__.py. Semantics (tests/test_widened.py checks them):
//   y[m, n] = fp32 sum over k of float(w[n, k]) * float(x[m, k]), plus float(bias[n]), rounded to x's dtype
//
// Why: without AVX512-BF16 each bf16 weight must be widened to fp32 before it is multiplied, and
// both PyTorch's bf16 matrix-vector product and inductor's loop for it did that slowly enough to
// read bf16 weights no faster, in bytes per second, than fp32 ones (docs/performance.md, Zen 3).
// Widening is one zero-extension and one shift (bf16 is fp32's upper half); a loop that walks W one
// row at a time with two accumulators keeps up with memory (four rows at once was slower).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LMLAB_BF16_AVX2 1
#endif

namespace {

#if defined(LMLAB_BF16_AVX2)
inline __m256 widen8(const at::BFloat16* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

inline float sum8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
#endif

// sum_k w[k] * x[k] in fp32
inline float dot(const at::BFloat16* w, const float* x, int64_t K) {
  int64_t k = 0;
  float acc = 0.f;
#if defined(LMLAB_BF16_AVX2)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (; k + 16 <= K; k += 16) {
    a0 = _mm256_fmadd_ps(widen8(w + k), _mm256_loadu_ps(x + k), a0);
    a1 = _mm256_fmadd_ps(widen8(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
  }
  for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(widen8(w + k), _mm256_loadu_ps(x + k), a0);
  acc = sum8(_mm256_add_ps(a0, a1));
#endif
  for (; k < K; ++k) acc += static_cast<float>(w[k]) * x[k];
  return acc;
}

at::Tensor bf16_rows(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "bf16_rows: x [M, K], w [N, K]");
  TORCH_CHECK(w.scalar_type() == at::kBFloat16, "bf16_rows: w must be bf16");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "bf16_rows: x must be fp32 or bf16");
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "bf16_rows: CPU tensors only");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->dim() == 1 && bias->size(0) == N), "bf16_rows: bias [N]");
  const at::Tensor xf = x.to(at::kFloat).contiguous(), wc = w.contiguous();  // x: one row, a few KB
  const at::Tensor bf = has_bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  at::Tensor y = at::empty({M, N}, x.options());
  const float* xp = xf.const_data_ptr<float>();
  const at::BFloat16* wp = wc.const_data_ptr<at::BFloat16>();
  const float* bp = has_bias ? bf.const_data_ptr<float>() : nullptr;
  const bool out_bf16 = x.scalar_type() == at::kBFloat16;
  float* yf = out_bf16 ? nullptr : y.data_ptr<float>();
  at::BFloat16* yb = out_bf16 ? y.data_ptr<at::BFloat16>() : nullptr;
  // W's rows split over threads; each thread walks its rows one at a time, every row read once
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t m = 0; m < M; ++m) {
        const float v = dot(wp + n * K, xp + m * K, K) + (bp ? bp[n] : 0.f);
        if (out_bf16)
          yb[m * N + n] = static_cast<at::BFloat16>(v);  // round to nearest even, as .to()
        else
          yf[m * N + n] = v;
      }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lmlab, m) {
  m.def("bf16_rows(Tensor x, Tensor w, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(lmlab, CPU, m) {
  m.impl("bf16_rows", &bf16_rows);
}
