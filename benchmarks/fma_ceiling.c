/* What the inner loops of the conv kernels can reach on this CPU, with their data in cache.
 *
 *     gcc -O3 -march=native benchmarks/fma_ceiling.c -o /tmp/fma_ceiling && /tmp/fma_ceiling
 *
 * One thread, AVX-512 (16 fp32 lanes), results in 512-bit FMAs per nanosecond: multiply by
 * 32 for GFLOP/s per core. Each loop keeps 7 or 8 independent accumulators, as the kernels do.
 *   peak           register operands only
 *   dense          oneDNN's shape: 4 weight vectors x 6 pixels, one broadcast per 4 FMAs
 *   block          patsparse's block-pattern kernel: one weight vector per 7 FMAs, each FMA
 *                  with its own input value broadcast (embedded {1to16})
 *   block of 32    blocks of 32 filters: two weight vectors per 7 pixels, each broadcast
 *                  feeding two FMAs (14 accumulators)
 *   flat, aligned  patsparse's per-kernel (flat) kernel: one 64-byte input vector per FMA
 *   flat, +1       the same at an offset of one float (every load splits a cache line)
 *   flat, span S   the flat loads spread over S bytes (L1 / L2 / beyond L2)
 * BENCHMARKS.md ("Why the goals stop where they do") has the figures.
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define BIG (1 << 20) /* floats: 4 MB */
static float in[BIG + 64] __attribute__((aligned(64)));
static float wt[256 * 64] __attribute__((aligned(64)));
static float sink[32 * 16] __attribute__((aligned(64)));

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void keep(__m512 *acc, int n) {
  for (int k = 0; k < n; k++)
    _mm512_store_ps(sink + 16 * k, _mm512_add_ps(acc[k], _mm512_load_ps(sink + 16 * k)));
}

__attribute__((noinline)) static double peak(long iters) {
  __m512 a[8], b[8];
  for (int k = 0; k < 8; k++) a[k] = _mm512_set1_ps(k), b[k] = _mm512_set1_ps(1.0f + k);
  double t = now();
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 8; k++) a[k] = _mm512_fmadd_ps(a[k], b[k], b[(k + 1) & 7]);
  t = now() - t;
  keep(a, 8);
  return iters * 8 / t / 1e9;
}

__attribute__((noinline)) static double dense(long iters) {
  __m512 a[24];
  for (int k = 0; k < 24; k++) a[k] = _mm512_setzero_ps();
  double t = now();
  for (long i = 0; i < iters; i++) {
    const float *x = in + ((i * 16) & 16383), *w = wt + (i & 255) * 64;
    __m512 w0 = _mm512_load_ps(w), w1 = _mm512_load_ps(w + 16);
    __m512 w2 = _mm512_load_ps(w + 32), w3 = _mm512_load_ps(w + 48);
    for (int p = 0; p < 6; p++) {
      __m512 b = _mm512_set1_ps(x[p]);
      a[4 * p] = _mm512_fmadd_ps(w0, b, a[4 * p]);
      a[4 * p + 1] = _mm512_fmadd_ps(w1, b, a[4 * p + 1]);
      a[4 * p + 2] = _mm512_fmadd_ps(w2, b, a[4 * p + 2]);
      a[4 * p + 3] = _mm512_fmadd_ps(w3, b, a[4 * p + 3]);
    }
  }
  t = now() - t;
  keep(a, 24);
  return iters * 24 / t / 1e9;
}

__attribute__((noinline)) static double block(long iters) {
  __m512 a[7];
  for (int k = 0; k < 7; k++) a[k] = _mm512_setzero_ps();
  double t = now();
  for (long i = 0; i < iters; i++) {
    const float *x = in + ((i * 16) & 16383);
    __m512 w = _mm512_load_ps(wt + (i & 255) * 16);
    for (int p = 0; p < 7; p++) a[p] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[p]), a[p]);
  }
  t = now() - t;
  keep(a, 7);
  return iters * 7 / t / 1e9;
}

__attribute__((noinline)) static double block32(long iters) {
  __m512 a[14];
  for (int k = 0; k < 14; k++) a[k] = _mm512_setzero_ps();
  double t = now();
  for (long i = 0; i < iters; i++) {
    const float *x = in + ((i * 16) & 16383), *w = wt + (i & 255) * 32;
    __m512 w0 = _mm512_load_ps(w), w1 = _mm512_load_ps(w + 16);
    for (int p = 0; p < 7; p++) {
      __m512 b = _mm512_set1_ps(x[p]);
      a[p] = _mm512_fmadd_ps(w0, b, a[p]);
      a[p + 7] = _mm512_fmadd_ps(w1, b, a[p + 7]);
    }
  }
  t = now() - t;
  keep(a, 14);
  return iters * 14 / t / 1e9;
}

/* one tap of the flat kernel per iteration: a broadcast weight times 8 input vectors */
__attribute__((noinline)) static double flat(long iters, int offset, long span) {
  __m512 a[8];
  for (int k = 0; k < 8; k++) a[k] = _mm512_setzero_ps();
  double t = now();
  for (long i = 0; i < iters; i++) {
    const float *x = in + offset + ((i * 4099 * 16) & (span - 1));
    __m512 w = _mm512_set1_ps(wt[i & 255]);
    for (int k = 0; k < 8; k++) a[k] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * k), a[k]);
  }
  t = now() - t;
  keep(a, 8);
  return iters * 8 / t / 1e9;
}

int main(void) {
  for (long i = 0; i < BIG + 64; i++) in[i] = 1e-4f * (i % 7);
  for (int i = 0; i < 256 * 64; i++) wt[i] = 1e-3f;
  const long n = 40000000;
  for (int round = 1; round <= 2; round++) {
    printf("round %d, 512-bit FMAs per ns, one thread\n", round);
    printf("  peak             %.2f\n", peak(n));
    printf("  dense            %.2f\n", dense(n / 3));
    printf("  block            %.2f\n", block(n));
    printf("  block of 32      %.2f\n", block32(n / 2));
    printf("  flat, aligned    %.2f\n", flat(n, 0, 8192));
    printf("  flat, +1         %.2f\n", flat(n, 1, 8192));
    const long spans[] = {8192, 65536, 262144, 1 << 20};
    for (int s = 0; s < 4; s++)
      printf("  flat, span %4ld KB: aligned %.2f, +1 %.2f\n", spans[s] / 256,
             flat(n / 2, 0, spans[s]), flat(n / 2, 1, spans[s]));
  }
  return sink[3] == 12345.0f;
}
