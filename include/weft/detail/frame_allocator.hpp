// Recycles coroutine frames through per-thread free lists, so that spawning a task in steady
// state performs no heap allocation and takes no lock.
//
// Frames are grouped in size classes of kFrameGranule bytes. A thread's cache holds, per
// class, a LIFO free list; all lists together hold at most kCacheBytesPerThread bytes. A frame
// freed on another thread than the one that allocated it simply joins the freeing thread's
// cache (frames are plain heap blocks of their class size, interchangeable between threads).
// Only a cache miss or overflow reaches ::operator new/delete, and those are counted
// (frame_heap_allocations()) so tests and benchmarks can show the steady state allocates
// nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weft::detail {

// 32 bytes: half a cache line, so small frames (fib's is about 200 bytes) waste little.
inline constexpr std::size_t kFrameGranule = 32;
// Frames up to 2 KiB are cached; larger ones come from the heap each time.
inline constexpr std::size_t kFrameClasses = 64;
// What one thread's cache may hold, whatever the classes: 16,384 frames of a typical 256
// bytes. A wide fork (a group of 10,000 children, a mass cancellation) is often spawned on one
// worker and finished on another; a cache that cannot take all of its frames sends the rest
// to free(), where the other thread's malloc arena lock turns the wave of completions into a
// lock convoy (it doubled the cancellation latency of 10,000 parked children on 2 workers).
inline constexpr std::size_t kCacheBytesPerThread = 4 * 1024 * 1024;

struct FreeFrame {
  FreeFrame* next;
};

// Trivially constructible and destructible, so that access from inline code is a plain
// thread-local load with no init guard; the cleanup at thread exit is registered on the
// first cache miss (see frame_allocator.cpp).
struct FrameCache {
  FreeFrame* head[kFrameClasses];
  std::size_t cached_bytes;  // in all lists; at most kCacheBytesPerThread once registered
  bool cleanup_registered;
};
inline thread_local FrameCache tl_frame_cache;

void* allocate_frame_slow(std::size_t size_class);
void release_frame_slow(void* frame, std::size_t size_class) noexcept;
void* allocate_large_frame(std::size_t bytes);
void release_large_frame(void* frame, std::size_t bytes) noexcept;

inline void* allocate_frame(std::size_t bytes) {
  const std::size_t c = (bytes + kFrameGranule - 1) / kFrameGranule;
  if (c < kFrameClasses) [[likely]] {
    FrameCache& cache = tl_frame_cache;
    if (FreeFrame* f = cache.head[c]) [[likely]] {
      cache.head[c] = f->next;
      cache.cached_bytes -= c * kFrameGranule;
      return f;
    }
    return allocate_frame_slow(c);
  }
  return allocate_large_frame(bytes);
}

inline void release_frame(void* frame, std::size_t bytes) noexcept {
  const std::size_t c = (bytes + kFrameGranule - 1) / kFrameGranule;
  if (c < kFrameClasses) [[likely]] {
    FrameCache& cache = tl_frame_cache;
    // An unregistered cache would leak its frames at thread exit: the slow path registers.
    if (cache.cached_bytes + c * kFrameGranule <= kCacheBytesPerThread &&
        cache.cleanup_registered) [[likely]] {
      auto* f = static_cast<FreeFrame*>(frame);
      f->next = cache.head[c];
      cache.head[c] = f;
      cache.cached_bytes += c * kFrameGranule;
      return;
    }
    release_frame_slow(frame, c);
    return;
  }
  release_large_frame(frame, bytes);
}

// Process-wide count of frames that had to come from ::operator new (cache misses and large
// frames) since start. Steady-state recursion leaves it unchanged.
std::uint64_t frame_heap_allocations() noexcept;

}  // namespace weft::detail
