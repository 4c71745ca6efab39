#include "weft/detail/frame_allocator.hpp"

#include <atomic>
#include <cstdint>
#include <new>

namespace weft::detail {
namespace {

// Relaxed: a statistic read by tests and benchmarks; it orders nothing.
std::atomic<std::uint64_t> g_heap_allocations{0};

std::size_t class_bytes(std::size_t size_class) {
  // Class 0 only serves zero-sized requests, which coroutine frames never make.
  return (size_class == 0 ? 1 : size_class) * kFrameGranule;
}

// Returns this thread's cached frames to the heap when the thread exits.
struct CacheCleanup {
  ~CacheCleanup() {
    FrameCache& cache = tl_frame_cache;
    for (std::size_t c = 0; c < kFrameClasses; ++c) {
      FreeFrame* f = cache.head[c];
      while (f != nullptr) {
        FreeFrame* next = f->next;
        ::operator delete(static_cast<void*>(f), class_bytes(c));
        f = next;
      }
      cache.head[c] = nullptr;
    }
    // A full cache sends frames freed by later thread-exit destructors straight to the heap.
    cache.cached_bytes = SIZE_MAX / 2;
  }
};
thread_local CacheCleanup tl_cleanup;

void register_cleanup(FrameCache& cache) {
  if (!cache.cleanup_registered) {
    cache.cleanup_registered = true;
    (void)&tl_cleanup;  // odr-use: constructs it and registers its destructor for thread exit
  }
}

}  // namespace

void* allocate_frame_slow(std::size_t size_class) {
  register_cleanup(tl_frame_cache);
  g_heap_allocations.fetch_add(1, std::memory_order_relaxed);
  return ::operator new(class_bytes(size_class));
}

void release_frame_slow(void* frame, std::size_t size_class) noexcept {
  FrameCache& cache = tl_frame_cache;
  register_cleanup(cache);
  // Counted as the inline paths count it (class 0 included).
  const std::size_t bytes = size_class * kFrameGranule;
  if (cache.cached_bytes + bytes <= kCacheBytesPerThread) {
    auto* f = static_cast<FreeFrame*>(frame);
    f->next = cache.head[size_class];
    cache.head[size_class] = f;
    cache.cached_bytes += bytes;
    return;
  }
  ::operator delete(frame, class_bytes(size_class));
}

void* allocate_large_frame(std::size_t bytes) {
  g_heap_allocations.fetch_add(1, std::memory_order_relaxed);
  return ::operator new(bytes);
}

void release_large_frame(void* frame, std::size_t bytes) noexcept {
  ::operator delete(frame, bytes);
}

std::uint64_t frame_heap_allocations() noexcept {
  return g_heap_allocations.load(std::memory_order_relaxed);
}

}  // namespace weft::detail
