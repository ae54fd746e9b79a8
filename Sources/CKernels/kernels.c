#include "recur_kernels.h"
#include <math.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>
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

// ---------------------------------------------------------------- AVX2 + FMA: up to 6 rows × 16 columns

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

// C[rows][panels p0 ..< p0 + P] for R rows of A (R ≤ 6, P ≤ 4, R·P·2 ≤ 12 accumulators): one
// chain per element from zero along k, as every level computes it. R and P are constants at
// each call, so the arrays below are registers. An FMA takes 4 cycles (Zen 3; 5 on Zen 2) and two
// start per cycle: a block needs 8 independent accumulators (10 on Zen 2) to keep both units busy, which is
// why a few leftover rows take several panels at once. One row of one panel has 2, a quarter of
// the speed: a thread's call of 32 rows (two chunks of 16) ran 5 blocks of 6 and then 2 rows
// that cost as much as 8; C harness, Zen 3, 32 × 1024 × 256: 79 → 92 GFLOP/s.
__attribute__((target("avx2,fma"), always_inline))
static inline void block_avx2(const int R, const int P, int k, const float *a, int lda, const float *bp,
                              int n, int p0, int accumulate, float *c, int ldc) {
    __m256 acc[6][4][2];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < P; q++) acc[r][q][0] = acc[r][q][1] = _mm256_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        __m256 b[4][2];
        for (int q = 0; q < P; q++) {
            b[q][0] = _mm256_loadu_ps(bp + ((size_t)q * k + kk) * PANEL);
            b[q][1] = _mm256_loadu_ps(bp + ((size_t)q * k + kk) * PANEL + 8);
        }
        for (int r = 0; r < R; r++) {
            __m256 x = _mm256_broadcast_ss(a + (size_t)r * lda + kk);
            for (int q = 0; q < P; q++) {
                acc[r][q][0] = _mm256_fmadd_ps(x, b[q][0], acc[r][q][0]);
                acc[r][q][1] = _mm256_fmadd_ps(x, b[q][1], acc[r][q][1]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < P; q++) {
            int p = p0 + q, width = n - p * PANEL < PANEL ? n - p * PANEL : PANEL;
            store_avx2(c + (size_t)r * ldc + p * PANEL, acc[r][q][0], acc[r][q][1], width, accumulate);
        }
}

// R rows over every panel, P panels at a time, then the panels left one at a time.
__attribute__((target("avx2,fma"), always_inline))
static inline void rows_avx2(const int R, const int P, int n, int k, const float *a, int lda, const float *packed,
                             int accumulate, float *c, int ldc) {
    int panels = (n + PANEL - 1) / PANEL, p = 0;
    for (; p + P <= panels; p += P)
        block_avx2(R, P, k, a, lda, packed + (size_t)p * k * PANEL, n, p, accumulate, c, ldc);
    for (; p < panels; p++)
        block_avx2(R, 1, k, a, lda, packed + (size_t)p * k * PANEL, n, p, accumulate, c, ldc);
}

__attribute__((target("avx2,fma")))
static void gemm_avx2(int m, int n, int k, const float *a, int lda, const float *packed,
                      int accumulate, float *c, int ldc) {
    int i = 0;
    for (; i + 6 <= m; i += 6) rows_avx2(6, 1, n, k, a + (size_t)i * lda, lda, packed, accumulate, c + (size_t)i * ldc, ldc);
    const float *ar = a + (size_t)i * lda;
    float *cr = c + (size_t)i * ldc;
    switch (m - i) {   // the rows left: at least 8 accumulators in each block
    case 5: rows_avx2(5, 1, n, k, ar, lda, packed, accumulate, cr, ldc); break;
    case 4: rows_avx2(4, 1, n, k, ar, lda, packed, accumulate, cr, ldc); break;
    case 3: rows_avx2(3, 2, n, k, ar, lda, packed, accumulate, cr, ldc); break;
    case 2: rows_avx2(2, 2, n, k, ar, lda, packed, accumulate, cr, ldc); break;
    case 1: rows_avx2(1, 4, n, k, ar, lda, packed, accumulate, cr, ldc); break;
    default: break;
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

// ---------------------------------------------------------------- levels and dispatch

int recur_cpu_level(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) level = 2;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
        else level = 0;
    }
    return level;
}

// Set once by the executable before any thread starts (RECUR_KERNEL_LEVEL); -1: the CPU's.
static int forced_level = -1;

int recur_set_kernel_level(int level) {
    if (level < 0 || level > recur_cpu_level()) return -1;
    forced_level = level;
    return 0;
}

int recur_kernel_level(void) {
    return forced_level >= 0 ? forced_level : recur_cpu_level();
}

void recur_gemm_packed_level(int level, int m, int n, int k, const float *a, int lda,
                             const float *packed, int accumulate, float *c, int ldc) {
    int available = recur_cpu_level();
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

// ---------------------------------------------------------------- C += op(A) · B (weight gradients)
//
// The contract (recur_kernels.h): for every (i, j), acc = C[i][j]; for kk = 0, 1, …, k−1:
// acc = fma(op(A)[i][kk], B[kk][j], acc); C[i][j] = acc. The reference is gemm_add_portable
// below, written as exactly that loop. The vector paths compute the same chains, several
// elements side by side: k is cut into blocks of KC and each block reloads the accumulator from
// C (a float store and load are exact), so blocking and packing never change an element's order.
//
// Vector paths (GotoBLAS layout): for each block of NC columns and KC steps of k, B's block is
// packed into panels of NR columns (bp[panel][kk][0..NR)), then for each block of MC rows, op(A)'s
// block into panels of MR rows (ap[panel][kk][0..MR)), both zero-padded at the edges; a
// register-blocked micro-kernel updates each MR × NR tile of C from one A panel and one B panel.
// Tiles cut by C's edge run on a copy in a local full tile, and only the valid part goes back.
// Sizes: the B panel (KC·NR floats, ≤ 40 KB at NR = 32) stays in L1 while A panels stream from
// L2 (MC·KC, ≤ 120 KB); the packed B block (KC·NC, ≤ 640 KB) stays in L2 or comes from L3. NC =
// 512 columns: with 256, H = 512's products (n = 512) packed A twice: at AVX-512 0.81–0.89 of
// OpenBLAS on Zen 5 in a C harness, 0.93–0.98 with 512; at AVX2 on Zen 3 (512 KB of L2, less
// than the block) 84 GFLOP/s with 256 and 90 with 512, the smaller shapes unchanged.

#define KC 320
#define MC 96
#define NC 512

// op(A)[i][kk]: A stored (k × m) when transposed (dGates of a chunk: rows × G·H), else (m × k).
static inline float a_at(const float *a, int lda, int trans_a, int i, int kk) {
    return trans_a ? a[(size_t)kk * lda + i] : a[(size_t)i * lda + kk];
}

// Row by row, k outer within a row: C's row i and B's row kk are read in order (the j-inner
// order of the first version strode B and A by a row per multiply-add, 0.55 GFLOP/s on Zen 5).
// Each element still takes its multiply-adds one at a time in ascending k: the same chain.
static void gemm_add_portable(int trans_a, int m, int n, int k, const float *a, int lda,
                              const float *b, int ldb, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        float *row = c + (size_t)i * ldc;
        for (int kk = 0; kk < k; kk++) {
            float x = a_at(a, lda, trans_a, i, kk);
            const float *brow = b + (size_t)kk * ldb;
            for (int j = 0; j < n; j++) row[j] = fmaf(x, brow[j], row[j]);
        }
    }
}

// Per-thread packing buffers, grown (never shrunk) on first use of a bigger shape: callers run
// one product per thread at a time, and steps after the first allocate nothing.
static _Thread_local float *pack_a_buffer, *pack_b_buffer;
static _Thread_local size_t pack_a_capacity, pack_b_capacity;

static float *grow(float **buffer, size_t *capacity, size_t count) {
    if (count > *capacity) {
        free(*buffer);
        *buffer = aligned_alloc(64, ((count * sizeof(float) + 63) / 64) * 64);
        *capacity = *buffer ? count : 0;
    }
    return *buffer;
}

// dst[panel][kk][0..width) = src[kk][panel·width + j] for kk < kc and j < width, zero past
// count: the rows of src (ld apart) cut into panels of `width` columns. Row by row: each row is
// read once, left to right, into every panel. Panel by panel, the rows were 1–4 KB apart (H =
// 256's B and LSTM's transposed A), at 4 KB all in one L1 set, and the strided loads waited on
// memory (9% of a product's time). Full panels copy a constant count, which compiles to vector
// moves. AVX2 on Zen 3, one thread (C harness, GFLOP/s): 1024 × 256 × 1040 81–83 → 87–88, the
// head's 65 × 256 × 1040 78 → 83.
static void pack_rows(float *dst, const float *src, int ld, int kc, int count, int width) {
    int panels = (count + width - 1) / width, full = count / width;
    size_t step = (size_t)kc * width;
    for (int kk = 0; kk < kc; kk++, dst += width) {
        const float *row = src + (size_t)kk * ld;
        int p = 0;
        switch (width) {
        case 6: for (; p < full; p++) memcpy(dst + p * step, row + p * 6, 6 * sizeof(float)); break;
        case 8: for (; p < full; p++) memcpy(dst + p * step, row + p * 8, 8 * sizeof(float)); break;
        case 16: for (; p < full; p++) memcpy(dst + p * step, row + p * 16, 16 * sizeof(float)); break;
        case 32: for (; p < full; p++) memcpy(dst + p * step, row + p * 32, 32 * sizeof(float)); break;
        default: break;
        }
        for (; p < panels; p++) {
            int valid = count - p * width < width ? count - p * width : width;
            for (int j = 0; j < width; j++) dst[p * step + j] = j < valid ? row[p * width + j] : 0.0f;
        }
    }
}

// ap[panel][kk][0..mr) = op(A)[i0 + panel·mr + r][k0 + kk], zero past mc. `a` points at
// op(A)[i0][k0]. Transposed (the weight gradients' dGates), row kk of A holds op(A)'s column kk,
// packed as B's rows are; otherwise each panel reads its mr rows side by side along k.
static void pack_a_block(float *ap, const float *a, int lda, int trans_a, int mc, int kc, int mr) {
    if (trans_a) { pack_rows(ap, a, lda, kc, mc, mr); return; }
    for (int p = 0; p * mr < mc; p++) {
        int height = mc - p * mr < mr ? mc - p * mr : mr;
        float *dst = ap + (size_t)p * kc * mr;
        for (int kk = 0; kk < kc; kk++) {
            float *row = dst + (size_t)kk * mr;
            for (int r = 0; r < height; r++) row[r] = a[(size_t)(p * mr + r) * lda + kk];
            for (int r = height; r < mr; r++) row[r] = 0.0f;
        }
    }
}

typedef void (*micro_kernel)(int kc, const float *ap, const float *bp, float *c, int ldc);

// Asks for the lines of the C tile (rows × width at `tile`) the micro-kernel updates next, so
// that they arrive while it works on the current one. C does not stay in L2 between k blocks
// (LSTM H = 512's dW: 2048 × 512 floats = 4 MB), and the micro-kernel loads all its C lines (16
// at AVX-512, rows ldc apart) at its start, too late for any hardware prefetcher: without this
// each call began by waiting for them. AVX-512, 2048 × 512 × 1040 on Zen 4: 0.94 of OpenBLAS without, 1.01
// with; the H = 256 shapes and AVX2 unchanged within noise (recur bench --products, medians of 3).
static inline void prefetch_tile(const float *tile, int rows, int width, int ldc) {
    for (int r = 0; r < rows; r++) {
        const float *row = tile + (size_t)r * ldc;
        for (int j = 0; j < width; j += 16) __builtin_prefetch(row + j, 1, 3);
        __builtin_prefetch(row + width - 1, 1, 3);   // the last line when the row is not 64-byte aligned
    }
}

// One level's blocked driver; `micro` updates a full MR × NR tile of C (row stride ldc); B is
// packed NC columns at a time.
static void gemm_add_blocked(micro_kernel micro, int mr, int nr, int trans_a, int m, int n, int k,
                             const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
    // k in equal blocks of at most KC (k = 16·65 = 1040 → 4 × 260, not 3 × 320 + 80): each
    // block is one pass over C.
    int k_blocks = (k + KC - 1) / KC, kc_max = (k + k_blocks - 1) / k_blocks;
    int nc_max = n < NC ? n : NC, mc_max = m < MC ? m : MC;
    float *bp = grow(&pack_b_buffer, &pack_b_capacity, (size_t)kc_max * ((nc_max + nr - 1) / nr) * nr);
    float *ap = grow(&pack_a_buffer, &pack_a_capacity, (size_t)kc_max * ((mc_max + mr - 1) / mr) * mr);
    if (!bp || !ap) { gemm_add_portable(trans_a, m, n, k, a, lda, b, ldb, c, ldc); return; }   // out of memory: same bits, slowly
    float edge[16 * 64];   // one tile (mr·nr ≤ 16·64) for tiles cut by C's edge
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += kc_max) {   // ascending: each element's chain continues in order
            int kc = k - pc < kc_max ? k - pc : kc_max;
            // bp[panel][kk][0..nr) = B[pc + kk][jc + panel·nr + j], zero past n.
            pack_rows(bp, b + (size_t)pc * ldb + jc, ldb, kc, nc, nr);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                const float *a0 = trans_a ? a + (size_t)pc * lda + ic : a + (size_t)ic * lda + pc;
                pack_a_block(ap, a0, lda, trans_a, mc, kc, mr);
                for (int jr = 0; jr < nc; jr += nr) {
                    int width = nc - jr < nr ? nc - jr : nr;
                    const float *bpanel = bp + (size_t)(jr / nr) * kc * nr;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int height = mc - ir < mr ? mc - ir : mr;
                        const float *apanel = ap + (size_t)(ir / mr) * kc * mr;
                        float *tile = c + (size_t)(ic + ir) * ldc + jc + jr;
                        // The next tile: down this column of tiles, else the top of the next one.
                        int next_ir = ir + mr < mc ? ir + mr : 0, next_jr = ir + mr < mc ? jr : jr + nr;
                        if (next_jr < nc)
                            prefetch_tile(c + (size_t)(ic + next_ir) * ldc + jc + next_jr, mc - next_ir < mr ? mc - next_ir : mr,
                                          nc - next_jr < nr ? nc - next_jr : nr, ldc);
                        if (height == mr && width == nr) {
                            micro(kc, apanel, bpanel, tile, ldc);
                        } else {
                            for (int r = 0; r < mr; r++)
                                for (int j = 0; j < nr; j++)
                                    edge[r * nr + j] = r < height && j < width ? tile[(size_t)r * ldc + j] : 0.0f;
                            micro(kc, apanel, bpanel, edge, nr);
                            for (int r = 0; r < height; r++) memcpy(tile + (size_t)r * ldc, edge + r * nr, sizeof(float) * width);
                        }
                    }
                }
            }
        }
    }
}

// AVX2 + FMA micro-kernel: 6 rows × 16 columns, 12 ymm accumulators.
#define MR_AVX2 6
#define NR_AVX2 16

#define AVX2_ROW(r) \
    x = _mm256_broadcast_ss(ap + r); \
    c##r##l = _mm256_fmadd_ps(x, bl, c##r##l); c##r##h = _mm256_fmadd_ps(x, bh, c##r##h);
#define AVX2_LOAD(r) __m256 c##r##l = _mm256_loadu_ps(c + (size_t)(r) * ldc), c##r##h = _mm256_loadu_ps(c + (size_t)(r) * ldc + 8);
#define AVX2_STORE(r) _mm256_storeu_ps(c + (size_t)(r) * ldc, c##r##l); _mm256_storeu_ps(c + (size_t)(r) * ldc + 8, c##r##h);

__attribute__((target("avx2,fma")))
static void micro_avx2(int kc, const float *ap, const float *bp, float *c, int ldc) {
    AVX2_LOAD(0) AVX2_LOAD(1) AVX2_LOAD(2) AVX2_LOAD(3) AVX2_LOAD(4) AVX2_LOAD(5)
    for (int kk = 0; kk < kc; kk++, ap += MR_AVX2, bp += NR_AVX2) {
        __m256 bl = _mm256_loadu_ps(bp), bh = _mm256_loadu_ps(bp + 8), x;
        AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2) AVX2_ROW(3) AVX2_ROW(4) AVX2_ROW(5)
    }
    AVX2_STORE(0) AVX2_STORE(1) AVX2_STORE(2) AVX2_STORE(3) AVX2_STORE(4) AVX2_STORE(5)
}

// AVX-512 micro-kernel: 8 rows × 32 columns, 16 zmm accumulators.
#define MR_AVX512 8
#define NR_AVX512 32

#define AVX512_ROW(r) \
    x = _mm512_set1_ps(ap[r]); \
    c##r##a = _mm512_fmadd_ps(x, b0, c##r##a); c##r##b = _mm512_fmadd_ps(x, b1, c##r##b);
#define AVX512_LOAD(r) __m512 c##r##a = _mm512_loadu_ps(c + (size_t)(r) * ldc), c##r##b = _mm512_loadu_ps(c + (size_t)(r) * ldc + 16);
#define AVX512_STORE(r) _mm512_storeu_ps(c + (size_t)(r) * ldc, c##r##a); _mm512_storeu_ps(c + (size_t)(r) * ldc + 16, c##r##b);

__attribute__((target("avx512f")))
static void micro_avx512(int kc, const float *ap, const float *bp, float *c, int ldc) {
    AVX512_LOAD(0) AVX512_LOAD(1) AVX512_LOAD(2) AVX512_LOAD(3) AVX512_LOAD(4) AVX512_LOAD(5) AVX512_LOAD(6) AVX512_LOAD(7)
    for (int kk = 0; kk < kc; kk++, ap += MR_AVX512, bp += NR_AVX512) {
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16), x;
        AVX512_ROW(0) AVX512_ROW(1) AVX512_ROW(2) AVX512_ROW(3) AVX512_ROW(4) AVX512_ROW(5) AVX512_ROW(6) AVX512_ROW(7)
    }
    AVX512_STORE(0) AVX512_STORE(1) AVX512_STORE(2) AVX512_STORE(3) AVX512_STORE(4) AVX512_STORE(5) AVX512_STORE(6) AVX512_STORE(7)
}

void recur_gemm_add_level(int level, int trans_a, int m, int n, int k, const float *a, int lda,
                          const float *b, int ldb, float *c, int ldc) {
    int available = recur_cpu_level();
    if (level > available) level = available;
    if (m <= 0 || n <= 0 || k <= 0) return;
    switch (level) {
    case 2: gemm_add_blocked(micro_avx512, MR_AVX512, NR_AVX512, trans_a, m, n, k, a, lda, b, ldb, c, ldc); break;
    case 1: gemm_add_blocked(micro_avx2, MR_AVX2, NR_AVX2, trans_a, m, n, k, a, lda, b, ldb, c, ldc); break;
    default: gemm_add_portable(trans_a, m, n, k, a, lda, b, ldb, c, ldc); break;
    }
}

void recur_gemm_add(int trans_a, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float *c, int ldc) {
    recur_gemm_add_level(recur_kernel_level(), trans_a, m, n, k, a, lda, b, ldb, c, ldc);
}

// ---------------------------------------------------------------- exp, sigmoid, tanh
//
// One scheme written three times (portable, AVX2, AVX-512) with the same operations in the
// same order and no FMA (-ffp-contract=off): x is clamped, split as n·ln2 + r, e^r from a
// polynomial, 2^n put in the exponent bits.

#define EXP_LO (-87.3f)
#define EXP_HI 88.7f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
#define MAGIC 12582912.0f  /* 1.5·2^23: adding it rounds to an integer in the low mantissa bits */
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

static inline float exp_portable(float x) {
    x = x < EXP_LO ? EXP_LO : (x > EXP_HI ? EXP_HI : x);
    float t = x * LOG2E + MAGIC;
    float n = t - MAGIC;
    float r = x - n * LN2_HI;
    r = r - n * LN2_LO;
    float p = P0;
    p = p * r + P1; p = p * r + P2; p = p * r + P3; p = p * r + P4; p = p * r + P5;
    float r2 = r * r;
    float er = p * r2 + r + 1.0f;
    int32_t tb, mb; memcpy(&tb, &t, 4); float magic = MAGIC; memcpy(&mb, &magic, 4);
    int32_t sb = (tb - mb + 127) << 23;
    float scale; memcpy(&scale, &sb, 4);
    return er * scale;
}

__attribute__((target("avx2")))
static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));  // NaN stays NaN
    __m256 magic = _mm256_set1_ps(MAGIC);
    __m256 t = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), magic);
    __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)));
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(P5));
    __m256 er = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic)),
                                                      _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(er, _mm256_castsi256_ps(bits));
}

__attribute__((target("avx512f")))
static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));  // NaN stays NaN
    __m512 magic = _mm512_set1_ps(MAGIC);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(LN2_HI)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(LN2_LO)));
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(P1));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(P2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(P3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(P4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(P5));
    __m512 er = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic)),
                                                      _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(er, _mm512_castsi512_ps(bits));
}

// kind: 0 exp, 1 sigmoid, 2 tanh
static inline float apply_portable(float x, int kind) {
    if (kind == 0) return exp_portable(x);
    if (kind == 1) return 1.0f / (1.0f + exp_portable(-x));
    return 2.0f / (1.0f + exp_portable(-2.0f * x)) - 1.0f;
}

__attribute__((target("avx2")))
static void apply_avx2(float *x, int n, int kind) {
    int i = 0;
    __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (kind == 0) v = exp_avx2(v);
        else if (kind == 1) v = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(zero, v))));
        else v = _mm256_sub_ps(_mm256_div_ps(two, _mm256_add_ps(one, exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), v)))), one);
        _mm256_storeu_ps(x + i, v);
    }
    for (; i < n; i++) x[i] = apply_portable(x[i], kind);
}

__attribute__((target("avx512f")))
static void apply_avx512(float *x, int n, int kind) {
    __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        int left = n - i;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(mask, x + i);
        if (kind == 0) v = exp_avx512(v);
        else if (kind == 1) v = _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(zero, v))));
        else v = _mm512_sub_ps(_mm512_div_ps(two, _mm512_add_ps(one, exp_avx512(_mm512_mul_ps(_mm512_set1_ps(-2.0f), v)))), one);
        _mm512_mask_storeu_ps(x + i, mask, v);
    }
}

void recur_activation_level(int level, int function, float *x, int n) {
    int available = recur_cpu_level();
    if (level > available) level = available;
    switch (level) {
    case 2: apply_avx512(x, n, function); break;
    case 1: apply_avx2(x, n, function); break;
    default: for (int i = 0; i < n; i++) x[i] = apply_portable(x[i], function); break;
    }
}

static void apply(float *x, int n, int kind) {
    switch (recur_kernel_level()) {
    case 2: apply_avx512(x, n, kind); break;
    case 1: apply_avx2(x, n, kind); break;
    default: for (int i = 0; i < n; i++) x[i] = apply_portable(x[i], kind); break;
    }
}

void recur_exp(float *x, int n) { apply(x, n, 0); }
void recur_sigmoid(float *x, int n) { apply(x, n, 1); }
void recur_tanh(float *x, int n) { apply(x, n, 2); }
