#include "recur_kernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

#define PANEL 16

size_t recur_packed_count(int k, int n) {
    return (size_t)((n + PANEL - 1) / PANEL) * PANEL * (size_t)k;
}

void recur_pack(float *packed, const float *b, int k, int n, int ldb) {
    int panels = (n + PANEL - 1) / PANEL;
    for (int p = 0; p < panels; p++) {
        float *dst = packed + (size_t)p * k * PANEL;
        int width = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        for (int kk = 0; kk < k; kk++) {
            const float *src = b + (size_t)kk * ldb + p * PANEL;
            float *row = dst + (size_t)kk * PANEL;
            memcpy(row, src, sizeof(float) * width);
            for (int j = width; j < PANEL; j++) row[j] = 0.0f;
        }
    }
}

void recur_pack_transposed(float *packed, const float *b, int n, int k, int ldb) {
    int panels = (n + PANEL - 1) / PANEL;
    for (int p = 0; p < panels; p++) {
        float *dst = packed + (size_t)p * k * PANEL;
        for (int j = 0; j < PANEL; j++) {
            int column = p * PANEL + j;
            if (column < n) {
                const float *src = b + (size_t)column * ldb;
                for (int kk = 0; kk < k; kk++) dst[(size_t)kk * PANEL + j] = src[kk];
            } else {
                for (int kk = 0; kk < k; kk++) dst[(size_t)kk * PANEL + j] = 0.0f;
            }
        }
    }
}

// ---------------------------------------------------------------- portable (fmaf chains)

static void gemm_portable(int m, int n, int k, const float *a, int lda, const float *packed,
                          int accumulate, float *c, int ldc) {
    int panels = (n + PANEL - 1) / PANEL;
    for (int i = 0; i < m; i++) {
        const float *ar = a + (size_t)i * lda;
        for (int p = 0; p < panels; p++) {
            const float *bp = packed + (size_t)p * k * PANEL;
            float acc[PANEL] = {0};
            for (int kk = 0; kk < k; kk++)
                for (int j = 0; j < PANEL; j++) acc[j] = fmaf(ar[kk], bp[(size_t)kk * PANEL + j], acc[j]);
            int width = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
            float *cr = c + (size_t)i * ldc + p * PANEL;
            for (int j = 0; j < width; j++) cr[j] = accumulate ? cr[j] + acc[j] : acc[j];
        }
    }
}

// ---------------------------------------------------------------- AVX2 + FMA: 6 rows × 16 columns

__attribute__((target("avx2,fma")))
static inline void store_avx2(float *cr, __m256 lo, __m256 hi, int width, int accumulate) {
    if (width == PANEL) {
        if (accumulate) {
            lo = _mm256_add_ps(_mm256_loadu_ps(cr), lo);
            hi = _mm256_add_ps(_mm256_loadu_ps(cr + 8), hi);
        }
        _mm256_storeu_ps(cr, lo);
        _mm256_storeu_ps(cr + 8, hi);
    } else {
        float tmp[PANEL];
        _mm256_storeu_ps(tmp, lo);
        _mm256_storeu_ps(tmp + 8, hi);
        for (int j = 0; j < width; j++) cr[j] = accumulate ? cr[j] + tmp[j] : tmp[j];
    }
}

__attribute__((target("avx2,fma")))
static void gemm_avx2(int m, int n, int k, const float *a, int lda, const float *packed,
                      int accumulate, float *c, int ldc) {
    int panels = (n + PANEL - 1) / PANEL;
    for (int p = 0; p < panels; p++) {
        const float *bp = packed + (size_t)p * k * PANEL;
        int width = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        int i = 0;
        for (; i + 6 <= m; i += 6) {
            __m256 c0l = _mm256_setzero_ps(), c0h = _mm256_setzero_ps(), c1l = _mm256_setzero_ps(), c1h = _mm256_setzero_ps();
            __m256 c2l = _mm256_setzero_ps(), c2h = _mm256_setzero_ps(), c3l = _mm256_setzero_ps(), c3h = _mm256_setzero_ps();
            __m256 c4l = _mm256_setzero_ps(), c4h = _mm256_setzero_ps(), c5l = _mm256_setzero_ps(), c5h = _mm256_setzero_ps();
            const float *a0 = a + (size_t)i * lda;
            for (int kk = 0; kk < k; kk++) {
                __m256 bl = _mm256_loadu_ps(bp + (size_t)kk * PANEL), bh = _mm256_loadu_ps(bp + (size_t)kk * PANEL + 8);
                __m256 x;
                x = _mm256_broadcast_ss(a0 + kk);           c0l = _mm256_fmadd_ps(x, bl, c0l); c0h = _mm256_fmadd_ps(x, bh, c0h);
                x = _mm256_broadcast_ss(a0 + lda + kk);     c1l = _mm256_fmadd_ps(x, bl, c1l); c1h = _mm256_fmadd_ps(x, bh, c1h);
                x = _mm256_broadcast_ss(a0 + 2 * lda + kk); c2l = _mm256_fmadd_ps(x, bl, c2l); c2h = _mm256_fmadd_ps(x, bh, c2h);
                x = _mm256_broadcast_ss(a0 + 3 * lda + kk); c3l = _mm256_fmadd_ps(x, bl, c3l); c3h = _mm256_fmadd_ps(x, bh, c3h);
                x = _mm256_broadcast_ss(a0 + 4 * lda + kk); c4l = _mm256_fmadd_ps(x, bl, c4l); c4h = _mm256_fmadd_ps(x, bh, c4h);
                x = _mm256_broadcast_ss(a0 + 5 * lda + kk); c5l = _mm256_fmadd_ps(x, bl, c5l); c5h = _mm256_fmadd_ps(x, bh, c5h);
            }
            float *cr = c + (size_t)i * ldc + p * PANEL;
            store_avx2(cr, c0l, c0h, width, accumulate);
            store_avx2(cr + ldc, c1l, c1h, width, accumulate);
            store_avx2(cr + 2 * (size_t)ldc, c2l, c2h, width, accumulate);
            store_avx2(cr + 3 * (size_t)ldc, c3l, c3h, width, accumulate);
            store_avx2(cr + 4 * (size_t)ldc, c4l, c4h, width, accumulate);
            store_avx2(cr + 5 * (size_t)ldc, c5l, c5h, width, accumulate);
        }
        for (; i < m; i++) {
            __m256 cl = _mm256_setzero_ps(), ch = _mm256_setzero_ps();
            const float *ar = a + (size_t)i * lda;
            for (int kk = 0; kk < k; kk++) {
                __m256 x = _mm256_broadcast_ss(ar + kk);
                cl = _mm256_fmadd_ps(x, _mm256_loadu_ps(bp + (size_t)kk * PANEL), cl);
                ch = _mm256_fmadd_ps(x, _mm256_loadu_ps(bp + (size_t)kk * PANEL + 8), ch);
            }
            store_avx2(c + (size_t)i * ldc + p * PANEL, cl, ch, width, accumulate);
        }
    }
}

// ---------------------------------------------------------------- AVX-512: 8 rows × 32 columns

__attribute__((target("avx512f")))
static inline void store_avx512(float *cr, __m512 v, int width, int accumulate) {
    __mmask16 mask = width >= PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << width) - 1u);
    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, cr), v);
    _mm512_mask_storeu_ps(cr, mask, v);
}

#define ROW(r) \
    x = _mm512_set1_ps(a0[(size_t)(r) * lda + kk]); \
    c##r##a = _mm512_fmadd_ps(x, b0, c##r##a); c##r##b = _mm512_fmadd_ps(x, b1, c##r##b);

__attribute__((target("avx512f")))
static void gemm_avx512(int m, int n, int k, const float *a, int lda, const float *packed,
                        int accumulate, float *c, int ldc) {
    int panels = (n + PANEL - 1) / PANEL;
    int p = 0;
    for (; p + 2 <= panels; p += 2) {
        const float *bp0 = packed + (size_t)p * k * PANEL, *bp1 = bp0 + (size_t)k * PANEL;
        int w0 = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        int w1 = n - (p + 1) * PANEL < PANEL ? n - (p + 1) * PANEL : PANEL;
        int i = 0;
        for (; i + 8 <= m; i += 8) {
            __m512 c0a = _mm512_setzero_ps(), c0b = _mm512_setzero_ps(), c1a = _mm512_setzero_ps(), c1b = _mm512_setzero_ps();
            __m512 c2a = _mm512_setzero_ps(), c2b = _mm512_setzero_ps(), c3a = _mm512_setzero_ps(), c3b = _mm512_setzero_ps();
            __m512 c4a = _mm512_setzero_ps(), c4b = _mm512_setzero_ps(), c5a = _mm512_setzero_ps(), c5b = _mm512_setzero_ps();
            __m512 c6a = _mm512_setzero_ps(), c6b = _mm512_setzero_ps(), c7a = _mm512_setzero_ps(), c7b = _mm512_setzero_ps();
            const float *a0 = a + (size_t)i * lda;
            for (int kk = 0; kk < k; kk++) {
                __m512 b0 = _mm512_loadu_ps(bp0 + (size_t)kk * PANEL), b1 = _mm512_loadu_ps(bp1 + (size_t)kk * PANEL);
                __m512 x;
                ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
            }
            float *cr = c + (size_t)i * ldc + p * PANEL;
            store_avx512(cr, c0a, w0, accumulate); store_avx512(cr + PANEL, c0b, w1, accumulate); cr += ldc;
            store_avx512(cr, c1a, w0, accumulate); store_avx512(cr + PANEL, c1b, w1, accumulate); cr += ldc;
            store_avx512(cr, c2a, w0, accumulate); store_avx512(cr + PANEL, c2b, w1, accumulate); cr += ldc;
            store_avx512(cr, c3a, w0, accumulate); store_avx512(cr + PANEL, c3b, w1, accumulate); cr += ldc;
            store_avx512(cr, c4a, w0, accumulate); store_avx512(cr + PANEL, c4b, w1, accumulate); cr += ldc;
            store_avx512(cr, c5a, w0, accumulate); store_avx512(cr + PANEL, c5b, w1, accumulate); cr += ldc;
            store_avx512(cr, c6a, w0, accumulate); store_avx512(cr + PANEL, c6b, w1, accumulate); cr += ldc;
            store_avx512(cr, c7a, w0, accumulate); store_avx512(cr + PANEL, c7b, w1, accumulate);
        }
        for (; i < m; i++) {
            __m512 ca = _mm512_setzero_ps(), cb = _mm512_setzero_ps();
            const float *ar = a + (size_t)i * lda;
            for (int kk = 0; kk < k; kk++) {
                __m512 x = _mm512_set1_ps(ar[kk]);
                ca = _mm512_fmadd_ps(x, _mm512_loadu_ps(bp0 + (size_t)kk * PANEL), ca);
                cb = _mm512_fmadd_ps(x, _mm512_loadu_ps(bp1 + (size_t)kk * PANEL), cb);
            }
            float *cr = c + (size_t)i * ldc + p * PANEL;
            store_avx512(cr, ca, w0, accumulate);
            store_avx512(cr + PANEL, cb, w1, accumulate);
        }
    }
    for (; p < panels; p++) {   // an odd last panel
        const float *bp = packed + (size_t)p * k * PANEL;
        int w = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
        for (int i = 0; i < m; i++) {
            __m512 acc = _mm512_setzero_ps();
            const float *ar = a + (size_t)i * lda;
            for (int kk = 0; kk < k; kk++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(ar[kk]), _mm512_loadu_ps(bp + (size_t)kk * PANEL), acc);
            store_avx512(c + (size_t)i * ldc + p * PANEL, acc, w, accumulate);
        }
    }
}

// ---------------------------------------------------------------- dispatch

int recur_kernel_level(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) level = 2;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
        else level = 0;
    }
    return level;
}

void recur_gemm_packed_level(int level, int m, int n, int k, const float *a, int lda,
                             const float *packed, int accumulate, float *c, int ldc) {
    int available = recur_kernel_level();
    if (level > available) level = available;
    if (m <= 0 || n <= 0) return;
    // Blocks of rows keep A's block in cache while all of B's panels stream past it; the
    // arithmetic of each element is unchanged.
    const int block = 96;
    for (int i = 0; i < m; i += block) {
        int rows = m - i < block ? m - i : block;
        const float *ai = a + (size_t)i * lda;
        float *ci = c + (size_t)i * ldc;
        switch (level) {
        case 2: gemm_avx512(rows, n, k, ai, lda, packed, accumulate, ci, ldc); break;
        case 1: gemm_avx2(rows, n, k, ai, lda, packed, accumulate, ci, ldc); break;
        default: gemm_portable(rows, n, k, ai, lda, packed, accumulate, ci, ldc); break;
        }
    }
}

void recur_gemm_packed(int m, int n, int k, const float *a, int lda, const float *packed,
                       int accumulate, float *c, int ldc) {
    recur_gemm_packed_level(recur_kernel_level(), m, n, k, a, lda, packed, accumulate, c, ldc);
}
