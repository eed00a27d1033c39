/* Acquire/release access to the 64-bit positions shared by the producer and the consumer of
 * qa._native.ring.RingBuffer (GCC/Clang __atomic builtins; lock-free for 8-byte aligned
 * int64 on every 64-bit target we build for). Tiny inline helpers so Cython can call them. */
#ifndef QA_NATIVE_ATOMIC_H
#define QA_NATIVE_ATOMIC_H

#include <stdint.h>

static inline int64_t qa_load_acquire(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline int64_t qa_load_relaxed(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void qa_store_release(int64_t *p, int64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void qa_store_relaxed(int64_t *p, int64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Seqlock fences: the writer orders its claim before the data it overwrites, the reader
 * orders the data it copied before its re-check of the claim. */
static inline void qa_fence_release(void) {
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void qa_fence_acquire(void) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

#endif
