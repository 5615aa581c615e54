// `lmlab::w8a8_rows`: a few rows of activations [M, K] times int8 weight codes [N, K] with each
// activation row quantised to int8 on the fly, for decoding (M = 1); built on first use by
// lmlab/kernels/__init__.py. Reference semantics (tests/test_w8a8.py checks them to the bit):
//   sx[m] = max(max_k |x[m, k]|, FLT_MIN) / 127            (fp32)
//   q[m, k] = round_half_even(x[m, k] / sx[m])              (in [-127, 127])
//   y[m, n] = float(sum_k q[m, k] * codes[n, k]) * (sx[m] * scales[n]), rounded to x's dtype
//
// Why: decoding at batch 1 streams every weight once per token, and widening each int8 code to a
// float costs more instructions than loading it (docs/performance.md, Generation: w8a8). With the
// activations in int8 too, one instruction multiplies and sums 64 code pairs (AVX512-VNNI) or 32
// (AVX2), and a loop that walks W one row at a time keeps up with memory (interleaving several
// rows' streams was slower). llama.cpp's q8_0 does the same (int8 activations, per 32-value block
// there; per row here, so one integer sum per row). Without either instruction set: scalar loops.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define LMLAB_VNNI 1
#elif defined(__AVX2__)
#include <immintrin.h>
#define LMLAB_AVX2 1
#endif

namespace {

inline float to_float(float v) { return v; }
inline float to_float(at::BFloat16 v) { return static_cast<float>(v); }

// q in [-127, 127] as int8
template <typename T>
void quantize_row(const T* x, int64_t K, int8_t* q, float* scale) {
  float a = 0.f;
  for (int64_t k = 0; k < K; ++k) a = std::max(a, std::fabs(to_float(x[k])));
  const float s = std::max(a, FLT_MIN) / 127.f;
  *scale = s;
  int64_t k = 0;
  // the scalar loop below, 16 or 8 at a time (the same IEEE division and ties-to-even rounding)
#if defined(LMLAB_VNNI)
  const __m512 sv = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  for (; k + 16 <= K; k += 16) {
    __m512 v;
    if constexpr (std::is_same_v<T, float>) {
      v = _mm512_loadu_ps(x + k);
    } else {  // bf16 is fp32's upper half
      v = _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k))), 16));
    }
    __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_min_ps(hi, _mm512_max_ps(lo, r));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
  }
#elif defined(LMLAB_AVX2)
  const __m256 sv = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  for (; k + 8 <= K; k += 8) {
    __m256 v;
    if constexpr (std::is_same_v<T, float>) {
      v = _mm256_loadu_ps(x + k);
    } else {
      v = _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + k))), 16));
    }
    __m256 r = _mm256_round_ps(_mm256_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i i = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, r)));
    const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(i16, i16));
  }
#endif
  for (; k < K; ++k)
    q[k] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, std::nearbyint(to_float(x[k]) / s))));  // ties to even
}

// What the vector dot products read instead of q: VNNI multiplies unsigned by signed bytes, so it
// reads q + 128 (taken off again with the codes' row sums); AVX2's maddubs does too but sums pairs
// in int16, which q + 128 would overflow, so it reads |q| and moves q's sign onto the codes
// (|q| |w| <= 127 * 127, two of them fit in int16).
inline void prepare_row(const int8_t* q, int64_t K, uint8_t* p) {
  for (int64_t k = 0; k < K; ++k) {
#if defined(LMLAB_VNNI)
    p[k] = static_cast<uint8_t>(q[k] + 128);
#else
    p[k] = static_cast<uint8_t>(q[k] < 0 ? -q[k] : q[k]);
#endif
  }
}

// sum_k q[k] * w[k], exactly
inline int32_t dot(const int8_t* q, const uint8_t* p, const int8_t* w, int64_t K, int32_t w_sum) {
  int64_t k = 0;
  int32_t acc = 0;
#if defined(LMLAB_VNNI)
  // sum_k (p[k] - 128) * w[k] = sum_k p[k] * w[k] - 128 * sum_k w[k]
  __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
  for (; k + 128 <= K; k += 128) {
    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(p + k), _mm512_loadu_si512(w + k));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(p + k + 64), _mm512_loadu_si512(w + k + 64));
  }
  for (; k + 64 <= K; k += 64) a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(p + k), _mm512_loadu_si512(w + k));
  acc = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
  for (; k < K; ++k) acc += static_cast<int32_t>(p[k]) * static_cast<int32_t>(w[k]);
  return acc - 128 * w_sum;
#else
  (void)w_sum;
#if defined(LMLAB_AVX2)
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  auto step = [&](int64_t j) {  // 32 products |q| (w sign(q)), summed in pairs (int16), then in fours (int32)
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j));
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + j));
    const __m256i pv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(pv, _mm256_sign_epi8(wv, qv)), ones);
  };
  for (; k + 64 <= K; k += 64) {
    a0 = _mm256_add_epi32(a0, step(k));
    a1 = _mm256_add_epi32(a1, step(k + 32));
  }
  for (; k + 32 <= K; k += 32) a0 = _mm256_add_epi32(a0, step(k));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
  h = _mm_add_epi32(h, _mm_add_epi32(_mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1)));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  acc = _mm_cvtsi128_si32(h);
#else
  (void)p;
#endif
  for (; k < K; ++k) acc += static_cast<int32_t>(q[k]) * static_cast<int32_t>(w[k]);
  return acc;
#endif
}

at::Tensor w8a8_rows(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales, const at::Tensor& code_sums) {
  TORCH_CHECK(x.dim() == 2 && codes.dim() == 2 && scales.dim() == 1 && code_sums.dim() == 1,
              "w8a8_rows: x [M, K], codes [N, K], scales [N], code_sums [N]");
  TORCH_CHECK(codes.scalar_type() == at::kChar && code_sums.scalar_type() == at::kInt, "w8a8_rows: int8 codes, int32 code_sums");
  TORCH_CHECK(x.size(1) == codes.size(1) && scales.size(0) == codes.size(0) && code_sums.size(0) == codes.size(0),
              "w8a8_rows: shapes do not match");
  TORCH_CHECK(x.device().is_cpu() && codes.device().is_cpu(), "w8a8_rows: CPU tensors only");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "w8a8_rows: x must be fp32 or bf16");
  TORCH_CHECK(scales.scalar_type() == at::kFloat || scales.scalar_type() == at::kBFloat16, "w8a8_rows: scales must be fp32 or bf16");
  const int64_t M = x.size(0), K = x.size(1), N = codes.size(0);
  // no dtype conversions here: this runs ~100 times per token, and each copy was measurable
  const at::Tensor xc = x.contiguous(), wc = codes.contiguous(), sc = scales.contiguous(), cs = code_sums.contiguous();
  const bool bf16 = x.scalar_type() == at::kBFloat16, scales_bf16 = scales.scalar_type() == at::kBFloat16;
  std::vector<int8_t> q(M * K);
  std::vector<uint8_t> p(M * K);
  std::vector<float> sx(M);
  for (int64_t m = 0; m < M; ++m) {
    if (bf16)
      quantize_row(xc.const_data_ptr<at::BFloat16>() + m * K, K, q.data() + m * K, &sx[m]);
    else
      quantize_row(xc.const_data_ptr<float>() + m * K, K, q.data() + m * K, &sx[m]);
    prepare_row(q.data() + m * K, K, p.data() + m * K);
  }
  at::Tensor y = at::empty({M, N}, x.options());
  const int8_t* wp = wc.const_data_ptr<int8_t>();
  const int8_t* qp = q.data();
  const uint8_t* pp = p.data();
  const int32_t* csp = cs.const_data_ptr<int32_t>();
  const float* swf = scales_bf16 ? nullptr : sc.const_data_ptr<float>();
  const at::BFloat16* swb = scales_bf16 ? sc.const_data_ptr<at::BFloat16>() : nullptr;
  float* yf = bf16 ? nullptr : y.data_ptr<float>();
  at::BFloat16* yb = bf16 ? y.data_ptr<at::BFloat16>() : nullptr;
  // W's rows split over threads; each thread walks its rows one at a time, every row read once
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float sw = scales_bf16 ? static_cast<float>(swb[n]) : swf[n];
      for (int64_t m = 0; m < M; ++m) {
        const float v = static_cast<float>(dot(qp + m * K, pp + m * K, wp + n * K, K, csp[n])) * (sx[m] * sw);
        if (bf16)
          yb[m * N + n] = static_cast<at::BFloat16>(v);  // round to nearest even, as .to()
        else
          yf[m * N + n] = v;
      }
    }
  });
  return y;
}

// which of the loops above this build runs (benchmarks record it; a test checks it fits the CPU)
std::string w8a8_isa() {
#if defined(LMLAB_VNNI)
  return "avx512_vnni";
#elif defined(LMLAB_AVX2)
  return "avx2";
#else
  return "scalar";
#endif
}

}  // namespace

TORCH_LIBRARY(lmlab, m) {
  m.def("w8a8_rows(Tensor x, Tensor codes, Tensor scales, Tensor code_sums) -> Tensor");
  m.def("w8a8_isa() -> str", &w8a8_isa);
}

TORCH_LIBRARY_IMPL(lmlab, CPU, m) {
  m.impl("w8a8_rows", &w8a8_rows);
}
