/* Penwright's native decode step: one token through every layer of a Llama-style model with 4-bit weights.

Why: on CPUs without AVX-512, torch's int4 kernel (_weight_int4pack_mm_for_cpu) widens every weight to floats and
reached 0.70x llama.cpp's decode speed; llama.cpp multiplies 4-bit codes by activations rounded to int8 per block of
32 (Q4_1 x Q8_1) with integer instructions. This file does the same: AVX2 maddubs on the codes, one float scale per
block, a small thread pool of its own (no OpenMP, so it never fights torch's pool), and the whole layer loop (norms,
rotary positions, attention over the KV cache, SiLU gate) in one call, so no Python runs between layers.

It reads Penwright's own int4 layout (quantize.py): codes two a byte, row-major, column 2i in the low nibble, 2i+1
in the high one; per row and block of 32 a float step and a float minimum (value = code * step + minimum). The
output head is int8 per row (value = code * step). Nothing here is a private layout of torch's.

Python loads this file's shared library with ctypes (native.py) and checks every product against its own reference
before use; pw_available() says whether this build and CPU can run it. Built as an optional extension: a machine
without a C compiler, or a CPU other than x86-64 with AVX2 and FMA, decodes through torch instead.
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PW_VERSION 2

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
#define PW_X86 1
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#define PW_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define PW_X86 0
#endif

/* setuptools names the export of an extension module; nothing imports this one (ctypes loads it). */
void *PyInit__native(void) { return 0; }

int pw_version(void) { return PW_VERSION; }

#if PW_X86

/* Whether the integer products use AVX-512 VNNI (set by pw_available where the CPU has it; pw_use_vnni for tests). */
static int pw_vnni = 0;

int pw_available(void) {
  __builtin_cpu_init();
  pw_vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/* 1: VNNI where the CPU has it, 0: AVX2 only; returns the choice in force (tests compare the two). */
int pw_use_vnni(int wanted) {
  __builtin_cpu_init();
  pw_vnni = wanted && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
  return pw_vnni;
}

/* ---- thread pool ----------------------------------------------------------------------------------------------
   A task is cut into chunks (64 rows of a matrix, one attention head) that the caller and the workers claim one at a
   time, so a worker the OS has not scheduled (a busy machine) never holds a step up: the others take its chunks,
   and the caller only ever waits for a chunk already in hand. A claim carries the task's generation, so a worker
   that wakes late cannot take a chunk of a newer task with the older task's function. Workers spin briefly on the
   generation (a decode step hands out ~150 tasks in a row), yielding now and then, then sleep on a condition
   variable, so an idle app costs nothing. */

typedef void (*pw_task)(void *context, int chunk);

#define PW_MAX_THREADS 64
#define PW_SPINS 20000

static struct {
  int workers;
  pthread_t threads[PW_MAX_THREADS];
  atomic_uint generation;   /* published after the fields below */
  _Atomic uint64_t claims;  /* see pool_claim */
  atomic_int done;          /* chunks finished in this generation */
  atomic_int sleepers;
  _Atomic(pw_task) task;
  _Atomic(void *) context;
  atomic_int participants;
  pthread_mutex_t lock;
  pthread_cond_t wake;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* The claim word: generation << 32 | chunk count << 16 | next chunk. The count travels in the same word as the
   generation, so a late worker never compares a claim with another task's count (which let it take a chunk past the
   end of a finished task). */
#define PW_MAX_CHUNKS 0xffff

static void pool_claim(unsigned generation, pw_task task, void *context) {
  for (;;) {
    uint64_t claims = atomic_load(&pool.claims);
    int next = (int)(claims & 0xffff), count = (int)((claims >> 16) & 0xffff);
    if ((unsigned)(claims >> 32) != generation || next >= count) return;
    if (atomic_compare_exchange_weak(&pool.claims, &claims, claims + 1)) {
      task(context, next);
      atomic_fetch_add(&pool.done, 1);
    }
  }
}

static void *pool_worker(void *argument) {
  int index = (int)(intptr_t)argument;
  unsigned seen = 0;
  for (;;) {
    int spins = 0;
    while (atomic_load(&pool.generation) == seen) {
      if (++spins < PW_SPINS) {
        if (spins % 256 == 0) sched_yield(); /* let a busy machine's other work in */
        else _mm_pause();
        continue;
      }
      pthread_mutex_lock(&pool.lock);
      atomic_fetch_add(&pool.sleepers, 1);
      while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
      atomic_fetch_sub(&pool.sleepers, 1);
      pthread_mutex_unlock(&pool.lock);
    }
    seen = atomic_load(&pool.generation);
    if (index < atomic_load(&pool.participants)) pool_claim(seen, atomic_load(&pool.task), atomic_load(&pool.context));
  }
  return 0;
}

/* A child process has none of the workers (and maybe a lock a worker held): it starts afresh. */
static void pool_after_fork(void) {
  pool.workers = 0;
  atomic_store(&pool.sleepers, 0);
  pthread_mutex_init(&pool.lock, 0);
  pthread_cond_init(&pool.wake, 0);
}

/* Workers for up to `threads` threads in all (the caller is one); returns how many can take part. */
static int pool_start(int threads) {
  static int fork_handler = 0;
  if (!fork_handler) fork_handler = pthread_atfork(0, 0, pool_after_fork) == 0;
  if (threads > PW_MAX_THREADS) threads = PW_MAX_THREADS;
  if (threads < 1) threads = 1;
  while (pool.workers + 1 < threads) {
    int index = pool.workers + 1;
    if (pthread_create(&pool.threads[pool.workers], 0, pool_worker, (void *)(intptr_t)index) != 0) break;
    pthread_detach(pool.threads[pool.workers]);
    pool.workers++;
  }
  return pool.workers + 1 < threads ? pool.workers + 1 : threads;
}

static void pool_run(pw_task task, void *context, int chunks, int threads) {
  static unsigned generation = 0;
  if (threads <= 1 || chunks <= 1 || chunks > PW_MAX_CHUNKS) {
    for (int chunk = 0; chunk < chunks; chunk++) task(context, chunk);
    return;
  }
  generation++;
  atomic_store(&pool.task, task);
  atomic_store(&pool.context, context);
  atomic_store(&pool.participants, threads);
  atomic_store(&pool.done, 0);
  atomic_store(&pool.claims, (uint64_t)generation << 32 | (uint64_t)chunks << 16);
  atomic_store(&pool.generation, generation);
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
  }
  pool_claim(generation, task, context);
  for (int spins = 0; atomic_load(&pool.done) < chunks;) /* only chunks a worker has in hand are left */
    if (++spins % 64 == 0) sched_yield();
    else _mm_pause();
}

/* ---- activations as int8 blocks of 32 ------------------------------------------------------------------------
   Block b holds the even columns of the input's 32 in its first 16 bytes and the odd ones in its last 16, the order
   the nibbles come out of the 4-bit codes. d = max |x| / 127; sum = d * (sum of the block's int8 values). */

typedef struct {
  int8_t *values;
  float *step;
  float *sum;
} pw_q8;

static void quantize_q8(const float *x, int columns, pw_q8 *out, int interleave) {
  int blocks = columns / 32;
  for (int b = 0; b < blocks; b++) {
    const float *in = x + b * 32;
    float largest = 0;
    for (int i = 0; i < 32; i++) {
      float value = fabsf(in[i]);
      if (value > largest) largest = value;
    }
    float d = largest / 127.f, inverse = largest > 0 ? 127.f / largest : 0.f;
    int total = 0;
    int8_t *q = out->values + b * 32;
    for (int i = 0; i < 32; i++) {
      int code = (int)lrintf(in[i] * inverse);
      total += code;
      q[interleave ? (i & 1) * 16 + (i >> 1) : i] = (int8_t)code;
    }
    out->step[b] = d;
    out->sum[b] = d * (float)total;
  }
}

/* Room for `columns` int8 activations with their block steps and sums; 0 when out of memory (nothing held). */
static int q8_allocate(pw_q8 *q8, int columns) {
  q8->values = aligned_alloc(64, (size_t)((columns + 63) / 64) * 64);
  q8->step = malloc(sizeof(float) * (columns / 32 + 1));
  q8->sum = malloc(sizeof(float) * (columns / 32 + 1));
  if (q8->values && q8->step && q8->sum) return 1;
  free(q8->values), free(q8->step), free(q8->sum);
  q8->values = 0, q8->step = q8->sum = 0;
  return 0;
}

static void q8_free(pw_q8 *q8) { free(q8->values), free(q8->step), free(q8->sum); }

PW_AVX2 static inline float horizontal_sum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

/* ---- 4-bit weights x int8 activations ------------------------------------------------------------------------ */

typedef struct {
  const uint8_t *codes; /* [rows][columns / 2] */
  const float *step;    /* [rows][columns / 32] */
  const float *minimum; /* [rows][columns / 32] */
  const float *bias;    /* [rows] or NULL */
  int rows, columns;
} pw_q4_matrix;

typedef struct {
  const pw_q4_matrix *matrix;
  const pw_q8 *input;
  float *out;
  int accumulate; /* out += product instead of out = product */
} pw_q4_job;

#define PW_DOT_AVX2(w, a) _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones)
#define PW_DOT_VNNI(w, a) _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a)
#define PW_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vnni,avx512vl")))

/* Each kernel is written once and compiled for two instruction sets: AVX2 (maddubs, then madd to 32 bits) and
   AVX-512 VNNI (vpdpbusd does both in one instruction). Both give exactly the same integer sums. Two rows per pass
   share the activation loads. */
#define PW_Q4_ROWS(NAME, TARGET, DOT4) \
TARGET static void NAME(const pw_q4_matrix *m, const pw_q8 *a, float *out, int accumulate, int first, int last) { \
  const int blocks = m->columns / 32; \
  const __m256i mask = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1); \
  (void)ones; \
  int r = first; \
  for (; r + 1 < last; r += 2) {  \
    const uint8_t *c0 = m->codes + (size_t)r * m->columns / 2, *c1 = c0 + m->columns / 2; \
    const float *s0 = m->step + (size_t)r * blocks, *s1 = s0 + blocks; \
    const float *l0 = m->minimum + (size_t)r * blocks, *l1 = l0 + blocks; \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(); \
    float low0 = 0, low1 = 0; \
    for (int b = 0; b < blocks; b++) { \
      __m256i act = _mm256_loadu_si256((const __m256i *)(a->values + b * 32)); \
      __m128i raw0 = _mm_loadu_si128((const __m128i *)(c0 + b * 16)); \
      __m128i raw1 = _mm_loadu_si128((const __m128i *)(c1 + b * 16)); \
      __m256i w0 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw0, 4), raw0), mask); \
      __m256i w1 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw1, 4), raw1), mask); \
      __m256 p0 = _mm256_cvtepi32_ps(DOT4(w0, act)); \
      __m256 p1 = _mm256_cvtepi32_ps(DOT4(w1, act)); \
      float d = a->step[b], sum = a->sum[b]; \
      acc0 = _mm256_fmadd_ps(_mm256_set1_ps(s0[b] * d), p0, acc0); \
      acc1 = _mm256_fmadd_ps(_mm256_set1_ps(s1[b] * d), p1, acc1); \
      low0 += l0[b] * sum; \
      low1 += l1[b] * sum; \
    } \
    float v0 = horizontal_sum(acc0) + low0, v1 = horizontal_sum(acc1) + low1; \
    if (m->bias) { \
      v0 += m->bias[r]; \
      v1 += m->bias[r + 1]; \
    } \
    if (accumulate) { \
      out[r] += v0; \
      out[r + 1] += v1; \
    } else { \
      out[r] = v0; \
      out[r + 1] = v1; \
    } \
  } \
  for (; r < last; r++) { \
    const uint8_t *c = m->codes + (size_t)r * m->columns / 2; \
    const float *s = m->step + (size_t)r * blocks, *l = m->minimum + (size_t)r * blocks; \
    __m256 acc = _mm256_setzero_ps(); \
    float low = 0; \
    for (int b = 0; b < blocks; b++) { \
      __m256i act = _mm256_loadu_si256((const __m256i *)(a->values + b * 32)); \
      __m128i raw = _mm_loadu_si128((const __m128i *)(c + b * 16)); \
      __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), mask); \
      __m256 p = _mm256_cvtepi32_ps(DOT4(w, act)); \
      acc = _mm256_fmadd_ps(_mm256_set1_ps(s[b] * a->step[b]), p, acc); \
      low += l[b] * a->sum[b]; \
    } \
    float v = horizontal_sum(acc) + low + (m->bias ? m->bias[r] : 0.f); \
    out[r] = accumulate ? out[r] + v : v; \
  } \
}

PW_Q4_ROWS(q4_rows_avx2, PW_AVX2, PW_DOT_AVX2)
PW_Q4_ROWS(q4_rows_vnni, PW_VNNI, PW_DOT_VNNI)

#define PW_ROWS_PER_CHUNK 64  /* even: the kernels take rows in pairs */
#define PW_HEAD_ROWS_PER_CHUNK 512

static int chunk_count(int rows, int per_chunk) { return (rows + per_chunk - 1) / per_chunk; }

static void q4_task(void *context, int chunk) {
  pw_q4_job *job = context;
  int first = chunk * PW_ROWS_PER_CHUNK, last = first + PW_ROWS_PER_CHUNK;
  if (last > job->matrix->rows) last = job->matrix->rows;
  if (pw_vnni)
    q4_rows_vnni(job->matrix, job->input, job->out, job->accumulate, first, last);
  else
    q4_rows_avx2(job->matrix, job->input, job->out, job->accumulate, first, last);
}

/* ---- int8 weights (one step per row) x int8 activations: the output head ------------------------------------- */

typedef struct {
  const int8_t *codes; /* [rows][columns] */
  const float *step;   /* [rows] */
  int rows, columns;
  const pw_q8 *input;
  float *out;
} pw_q8_job;

/* signed x signed through an unsigned x signed product: |w| x (a with w's sign); weights are within -127..127 */
#define PW_Q8_ROWS(NAME, TARGET, DOT4) \
TARGET static void NAME(const pw_q8_job *job, int first, int last) { \
  const int blocks = job->columns / 32; \
  const __m256i ones = _mm256_set1_epi16(1); \
  (void)ones; \
  for (int r = first; r < last; r++) { \
    const int8_t *w = job->codes + (size_t)r * job->columns; \
    __m256 acc = _mm256_setzero_ps(); \
    for (int b = 0; b < blocks; b++) { \
      __m256i weights = _mm256_loadu_si256((const __m256i *)(w + b * 32)); \
      __m256i act = _mm256_loadu_si256((const __m256i *)(job->input->values + b * 32)); \
      __m256 p = _mm256_cvtepi32_ps(DOT4(_mm256_sign_epi8(weights, weights), _mm256_sign_epi8(act, weights))); \
      acc = _mm256_fmadd_ps(_mm256_set1_ps(job->input->step[b]), p, acc); \
    } \
    job->out[r] = horizontal_sum(acc) * job->step[r]; \
  } \
}

PW_Q8_ROWS(q8_rows_avx2, PW_AVX2, PW_DOT_AVX2)
PW_Q8_ROWS(q8_rows_vnni, PW_VNNI, PW_DOT_VNNI)

static void q8_task(void *context, int chunk) {
  pw_q8_job *job = context;
  int first = chunk * PW_HEAD_ROWS_PER_CHUNK, last = first + PW_HEAD_ROWS_PER_CHUNK;
  if (last > job->rows) last = job->rows;
  if (pw_vnni)
    q8_rows_vnni(job, first, last);
  else
    q8_rows_avx2(job, first, last);
}

/* ---- attention over the KV cache --------------------------------------------------------------------------------
   Keys and values: [kv_heads][capacity][head_dim] floats per layer (the cache's own buffers); query head h reads
   kv head h / (heads / kv_heads), as grouped-query attention does. */

typedef struct {
  const float *query;  /* [heads][head_dim], rotated */
  const float *keys;   /* [kv_heads][capacity][head_dim] */
  const float *values; /* same */
  float *out;          /* [heads][head_dim] */
  float *scores;       /* [heads][tokens] scratch */
  int heads, kv_heads, head_dim, tokens;
  long capacity;
  float scaling;
} pw_attention_job;

PW_AVX2 static float dot(const float *a, const float *b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float total = horizontal_sum(acc);
  for (; i < n; i++) total += a[i] * b[i];
  return total;
}

PW_AVX2 static void add_scaled(float *out, const float *x, float scale, int n) {
  __m256 s = _mm256_set1_ps(scale);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(s, _mm256_loadu_ps(x + i), _mm256_loadu_ps(out + i)));
  for (; i < n; i++) out[i] += scale * x[i];
}

static void attention_task(void *context, int h) {
  pw_attention_job *job = context;
  int group = job->heads / job->kv_heads;
  {
    const float *q = job->query + (size_t)h * job->head_dim;
    const float *keys = job->keys + (size_t)(h / group) * job->capacity * job->head_dim;
    const float *values = job->values + (size_t)(h / group) * job->capacity * job->head_dim;
    float *scores = job->scores + (size_t)h * job->tokens;
    float largest = -INFINITY;
    for (int t = 0; t < job->tokens; t++) {
      scores[t] = dot(q, keys + (size_t)t * job->head_dim, job->head_dim) * job->scaling;
      if (scores[t] > largest) largest = scores[t];
    }
    float total = 0;
    for (int t = 0; t < job->tokens; t++) {
      scores[t] = expf(scores[t] - largest);
      total += scores[t];
    }
    float *out = job->out + (size_t)h * job->head_dim;
    memset(out, 0, sizeof(float) * job->head_dim);
    for (int t = 0; t < job->tokens; t++)
      add_scaled(out, values + (size_t)t * job->head_dim, scores[t] / total, job->head_dim);
  }
}

/* ---- the model ------------------------------------------------------------------------------------------------ */

typedef struct {
  int layers, hidden, heads, kv_heads, head_dim, intermediate;
  float eps, scaling;
  const float **input_norms, **post_norms; /* [layers][hidden] */
  pw_q4_matrix *matrices;                  /* 4 per layer: qkv, output, gate/up, down */
  const float *final_norm;
  const int8_t *head_codes;
  const float *head_step;
  int vocabulary;
  /* scratch */
  float *normed, *qkv, *attended, *gate_up, *activated, *scores;
  long scores_size;
  pw_q8 q8;
  /* a voice: per matrix, out += up^T (down x), with down [rank][columns] and up [rank][rows], fp32 (0 rank: none) */
  int *low_rank;
  const float **low_down, **low_up;
  float *low_scratch;
  int low_scratch_size;
} pw_model;

static void rms_norm(const float *x, const float *weight, int n, float eps, float *out) {
  float total = 0;
  for (int i = 0; i < n; i++) total += x[i] * x[i];
  float inverse = 1.f / sqrtf(total / (float)n + eps);
  for (int i = 0; i < n; i++) out[i] = weight[i] * (x[i] * inverse);
}

static void rotate(float *x, const float *cos_table, const float *sin_table, int head_dim) {
  int half = head_dim / 2;
  for (int i = 0; i < half; i++) {
    float first = x[i], second = x[i + half];
    x[i] = first * cos_table[i] - second * sin_table[i];
    x[i + half] = second * cos_table[i + half] + first * sin_table[i + half];
  }
}

void pw_model_free(pw_model *m) {
  if (!m) return;
  free(m->input_norms);
  free(m->post_norms);
  free(m->matrices);
  free(m->normed);
  free(m->qkv);
  free(m->attended);
  free(m->gate_up);
  free(m->activated);
  free(m->scores);
  free(m->low_rank);
  free(m->low_down);
  free(m->low_up);
  free(m->low_scratch);
  q8_free(&m->q8);
  free(m);
}

/* A voice's change of one matrix's output, at full precision: small (rank 8-16 against hundreds of rows), so the
   calling thread does it alone while the pool rests. */
static void add_low_rank(pw_model *m, int index, const float *x, float *out) {
  int rank = m->low_rank[index];
  if (!rank) return;
  const pw_q4_matrix *matrix = &m->matrices[index];
  const float *down = m->low_down[index], *up = m->low_up[index];
  for (int r = 0; r < rank; r++) m->low_scratch[r] = dot(down + (size_t)r * matrix->columns, x, matrix->columns);
  for (int r = 0; r < rank; r++) add_scaled(out, up + (size_t)r * matrix->rows, m->low_scratch[r], matrix->rows);
}

/* Give matrix `index` a voice's low-rank change (rank 0: take it away). down: [rank][columns], up: [rank][rows],
   fp32, kept alive by the caller. Returns 0, or -1 for a bad index or no memory. */
int pw_set_low_rank(pw_model *m, int index, int rank, const float *down, const float *up) {
  if (!m || index < 0 || index >= 4 * m->layers || rank < 0) return -1;
  if (rank > m->low_scratch_size) {
    float *scratch = realloc(m->low_scratch, sizeof(float) * rank);
    if (!scratch) return -1;
    m->low_scratch = scratch;
    m->low_scratch_size = rank;
  }
  m->low_rank[index] = rank;
  m->low_down[index] = rank ? down : 0;
  m->low_up[index] = rank ? up : 0;
  return 0;
}

/* norms: 2 * layers pointers (input norms, then post-attention norms). matrices: 4 per layer, each described by
   codes, step, minimum, bias (NULL for none) and its row count; every matrix reads `hidden` columns except the down
   projection (`intermediate`). */
pw_model *pw_model_new(int layers, int hidden, int heads, int kv_heads, int head_dim, int intermediate, float eps,
                       float scaling, const void **norms, const void **matrices, const int *rows,
                       const float *final_norm, const int8_t *head_codes, const float *head_step, int vocabulary) {
  if (hidden % 32 || intermediate % 32 || heads % kv_heads || layers <= 0) return 0;
  pw_model *m = calloc(1, sizeof(pw_model));
  if (!m) return 0;
  *m = (pw_model){.layers = layers, .hidden = hidden, .heads = heads, .kv_heads = kv_heads, .head_dim = head_dim,
                  .intermediate = intermediate, .eps = eps, .scaling = scaling};
  m->input_norms = malloc(sizeof(float *) * layers);
  m->post_norms = malloc(sizeof(float *) * layers);
  m->matrices = calloc(4 * (size_t)layers, sizeof(pw_q4_matrix));
  m->low_rank = calloc(4 * (size_t)layers, sizeof(int));
  m->low_down = calloc(4 * (size_t)layers, sizeof(float *));
  m->low_up = calloc(4 * (size_t)layers, sizeof(float *));
  int widest = hidden > intermediate ? hidden : intermediate;
  int qkv = (heads + 2 * kv_heads) * head_dim;
  m->normed = malloc(sizeof(float) * hidden);
  m->qkv = malloc(sizeof(float) * qkv);
  m->attended = malloc(sizeof(float) * heads * head_dim);
  m->gate_up = malloc(sizeof(float) * 2 * intermediate);
  m->activated = malloc(sizeof(float) * intermediate);
  int q8_ready = q8_allocate(&m->q8, widest);
  if (!m->input_norms || !m->post_norms || !m->matrices || !m->normed || !m->qkv || !m->attended || !m->gate_up ||
      !m->activated || !q8_ready || !m->low_rank || !m->low_down || !m->low_up) {
    pw_model_free(m);
    return 0;
  }
  for (int l = 0; l < layers; l++) {
    m->input_norms[l] = norms[l];
    m->post_norms[l] = norms[layers + l];
    for (int k = 0; k < 4; k++) {
      pw_q4_matrix *matrix = &m->matrices[4 * l + k];
      const void **d = matrices + 4 * (4 * l + k);
      *matrix = (pw_q4_matrix){d[0], d[1], d[2], d[3], rows[4 * l + k], k == 3 ? intermediate : hidden};
    }
    int expected[4] = {qkv, hidden, 2 * intermediate, hidden};
    for (int k = 0; k < 4; k++)
      if (m->matrices[4 * l + k].rows != expected[k]) {
        pw_model_free(m);
        return 0;
      }
  }
  m->final_norm = final_norm;
  m->head_codes = head_codes;
  m->head_step = head_step;
  m->vocabulary = vocabulary;
  return m;
}

static void run_q4(pw_q4_matrix *matrix, pw_q8 *input, float *out, int accumulate, int shares) {
  pw_q4_job job = {matrix, input, out, accumulate};
  pool_run(q4_task, &job, chunk_count(matrix->rows, PW_ROWS_PER_CHUNK), shares);
}

/* One token: `hidden` (the token's embedding, overwritten) goes through every layer; its keys and values land at
   `position` of each layer's buffers (key_buffers[l], value_buffers[l]: [kv_heads][capacities[l]][head_dim]).
   `out` receives the scores ([vocabulary]) when the model has an int8 head, else the final-normed hidden state.
   cos_table/sin_table: the rotary factors for this position ([head_dim]). Returns 0, or -1 when out of memory. */
int pw_step(pw_model *m, float *hidden, const float *cos_table, const float *sin_table, float **key_buffers,
            float **value_buffers, const long *capacities, int position, int threads, float *out) {
  int shares = pool_start(threads);
  int tokens = position + 1;
  long needed = (long)m->heads * tokens;
  if (needed > m->scores_size) {
    float *scores = realloc(m->scores, sizeof(float) * needed * 2);
    if (!scores) return -1;
    m->scores = scores;
    m->scores_size = needed * 2;
  }
  const int hd = m->head_dim, query_width = m->heads * hd, kv_width = m->kv_heads * hd;
  for (int l = 0; l < m->layers; l++) {
    pw_q4_matrix *matrices = &m->matrices[4 * l];
    rms_norm(hidden, m->input_norms[l], m->hidden, m->eps, m->normed);
    quantize_q8(m->normed, m->hidden, &m->q8, 1);
    run_q4(&matrices[0], &m->q8, m->qkv, 0, shares);
    add_low_rank(m, 4 * l, m->normed, m->qkv);
    for (int h = 0; h < m->heads + m->kv_heads; h++) rotate(m->qkv + (size_t)h * hd, cos_table, sin_table, hd);
    for (int h = 0; h < m->kv_heads; h++) {
      size_t at = ((size_t)h * capacities[l] + position) * hd;
      memcpy(key_buffers[l] + at, m->qkv + query_width + (size_t)h * hd, sizeof(float) * hd);
      memcpy(value_buffers[l] + at, m->qkv + query_width + kv_width + (size_t)h * hd, sizeof(float) * hd);
    }
    pw_attention_job attention = {m->qkv,   key_buffers[l], value_buffers[l], m->attended, m->scores, m->heads,
                                  m->kv_heads, hd,             tokens,           capacities[l], m->scaling};
    pool_run(attention_task, &attention, m->heads, shares);
    quantize_q8(m->attended, query_width, &m->q8, 1);
    run_q4(&matrices[1], &m->q8, hidden, 1, shares);
    add_low_rank(m, 4 * l + 1, m->attended, hidden);
    rms_norm(hidden, m->post_norms[l], m->hidden, m->eps, m->normed);
    quantize_q8(m->normed, m->hidden, &m->q8, 1);
    run_q4(&matrices[2], &m->q8, m->gate_up, 0, shares);
    add_low_rank(m, 4 * l + 2, m->normed, m->gate_up);
    for (int i = 0; i < m->intermediate; i++) {
      float gate = m->gate_up[i];
      m->activated[i] = gate / (1.f + expf(-gate)) * m->gate_up[m->intermediate + i];
    }
    quantize_q8(m->activated, m->intermediate, &m->q8, 1);
    run_q4(&matrices[3], &m->q8, hidden, 1, shares);
    add_low_rank(m, 4 * l + 3, m->activated, hidden);
  }
  rms_norm(hidden, m->final_norm, m->hidden, m->eps, m->normed);
  if (!m->head_codes) {
    memcpy(out, m->normed, sizeof(float) * m->hidden);
    return 0;
  }
  quantize_q8(m->normed, m->hidden, &m->q8, 0);
  pw_q8_job head = {m->head_codes, m->head_step, m->vocabulary, m->hidden, &m->q8, out};
  pool_run(q8_task, &head, chunk_count(m->vocabulary, PW_HEAD_ROWS_PER_CHUNK), shares);
  return 0;
}

/* One product on its own, for the load-time self-check of every matrix: out = W x (+ bias). */
int pw_q4_product(const uint8_t *codes, const float *step, const float *minimum, const float *bias, int rows,
                  int columns, const float *x, float *out, int threads) {
  pw_q8 q8;
  if (columns % 32 || !q8_allocate(&q8, columns)) return -1;
  pw_q4_matrix matrix = {codes, step, minimum, bias, rows, columns};
  quantize_q8(x, columns, &q8, 1);
  run_q4(&matrix, &q8, out, 0, pool_start(threads));
  q8_free(&q8);
  return 0;
}

int pw_q8_product(const int8_t *codes, const float *step, int rows, int columns, const float *x, float *out,
                  int threads) {
  pw_q8 q8;
  if (columns % 32 || !q8_allocate(&q8, columns)) return -1;
  quantize_q8(x, columns, &q8, 0);
  pw_q8_job job = {codes, step, rows, columns, &q8, out};
  pool_run(q8_task, &job, chunk_count(rows, PW_HEAD_ROWS_PER_CHUNK), pool_start(threads));
  q8_free(&q8);
  return 0;
}

#else /* not x86-64 with GCC or Clang: the library loads, says it cannot run, and torch's kernels are used */

int pw_available(void) { return 0; }
int pw_use_vnni(int wanted) { (void)wanted; return 0; }
void *pw_model_new(void) { return 0; }
void pw_model_free(void *m) { (void)m; }
int pw_step(void) { return -1; }
int pw_set_low_rank(void) { return -1; }
int pw_q4_product(void) { return -1; }
int pw_q8_product(void) { return -1; }

#endif
