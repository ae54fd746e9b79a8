// Recur's own Float kernels: every Float product and activation of training, evaluation and
// sampling, at three levels (AVX-512, AVX2+FMA, portable C with fmaf) that give identical bits.
//
// Row-wise matrix products with a pre-packed weight, for the recurrent time loop:
//
// C (m × n) = A (m × k) · B  (+ C when accumulate), B prepared once by recur_pack or
// recur_pack_transposed into panels of 16 columns: packed[p][kk][0..16) = column p·16+j.
//
// Every element of C is one fused-multiply-add chain over kk = 0..k-1 starting from 0,
// then added to C: the result of a row does not depend on m, on the row's position, or on
// which kernel (AVX-512, AVX2+FMA, portable fmaf) ran it. That is what lets any number of
// threads split the streams and still produce bit-identical numbers.
#ifndef RECUR_KERNELS_H
#define RECUR_KERNELS_H
#include <stddef.h>

/// Floats needed for a packed k × n operand (n rounded up to a multiple of 16).
size_t recur_packed_count(int k, int n);

/// B given as (k × n) row-major with row stride ldb: product A · B.
void recur_pack(float *packed, const float *b, int k, int n, int ldb);

/// B given as (n × k) row-major with row stride ldb (a weight W stored as out × in):
/// product A · Wᵀ.
void recur_pack_transposed(float *packed, const float *b, int n, int k, int ldb);

/// C = A · B (+ C when accumulate != 0), B packed for (k, n). lda, ldc: row strides.
void recur_gemm_packed(int m, int n, int k, const float *a, int lda, const float *packed,
                       int accumulate, float *c, int ldc);

/// The same with a chosen kernel: 2 = AVX-512, 1 = AVX2+FMA, 0 = portable. Falls back to a
/// lower level when the CPU lacks the instructions. For tests.
void recur_gemm_packed_level(int level, int m, int n, int k, const float *a, int lda,
                             const float *packed, int accumulate, float *c, int ldc);

/// The best kernel level this CPU has: 2 = AVX-512 (avx512f), 1 = AVX2+FMA, 0 = portable.
int recur_cpu_level(void);

/// The level every kernel call without `_level` uses: the one set by recur_set_kernel_level,
/// else recur_cpu_level().
int recur_kernel_level(void);

/// Forces a level at or below the CPU's for the whole process (the executable calls it once,
/// before starting threads, from RECUR_KERNEL_LEVEL). Returns 0, or -1 when the CPU lacks it.
int recur_set_kernel_level(int level);

/// C (m × n, row stride ldc) += op(A) · B for the products that sum over many rows (weight
/// gradients over a chunk's T·streams rows; the classifier head). op(A) is (m × k): A is stored
/// (k × m) when trans_a != 0, else (m × k), row stride lda; B is (k × n), row stride ldb.
///
/// Order of operations, identical at every level: each element of C is one fused-multiply-add
/// chain along k ascending that starts from C's value:
///     acc = C[i][j]; for kk in 0..<k: acc = fma(op(A)[i][kk], B[kk][j], acc); C[i][j] = acc
/// (a product without accumulation is this after C = 0). Blocking k stores the accumulator to C
/// and reloads it, which is exact, so the result does not depend on the block sizes, the
/// packing, the vector width or where the element sits in a tile.
void recur_gemm_add(int trans_a, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float *c, int ldc);

/// The same at a chosen level (falls back to the CPU's best when higher). For tests and
/// benchmarks.
void recur_gemm_add_level(int level, int trans_a, int m, int n, int k, const float *a, int lda,
                          const float *b, int ldb, float *c, int ldc);


/// In place over n floats: e^x, 1/(1+e^-x), tanh x (= 2·sigmoid(2x) − 1). Cephes-style exp
/// (degree-6 polynomial on x − n·ln2, input clamped to [-87.3, 88.7]), ≈ 2 ulp; every kernel
/// (AVX-512, AVX2, portable) runs the same operations in the same order, without fused
/// multiply-adds, so all give identical results.
void recur_exp(float *x, int n);
void recur_sigmoid(float *x, int n);
void recur_tanh(float *x, int n);

/// The same with a chosen kernel level (as recur_gemm_packed_level) and function
/// (0 exp, 1 sigmoid, 2 tanh). For tests.
void recur_activation_level(int level, int function, float *x, int n);

#endif
