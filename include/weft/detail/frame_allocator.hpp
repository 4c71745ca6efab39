// Recycles coroutine frames through per-thread free lists, so that spawning a task in steady
// state performs no heap allocation and takes no lock.
//
// Frames are grouped in size classes of kFrameGranule bytes. A thread's cache holds, per
// class, a LIFO free list capped at kCacheBytesPerClass bytes; a frame freed on another thread
// than the one that allocated it simply joins the freeing thread's cache (frames are plain heap
// blocks of their class size, interchangeable between threads). Only a cache miss or overflow
// reaches ::operator new/delete, and those are counted (frame_heap_allocations()) so tests and
// benchmarks can show the steady state allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weft::detail {

// 32 bytes: half a cache line, so small frames (fib's is about 200 bytes) waste little.
inline constexpr std::size_t kFrameGranule = 32;
// Frames up to 2 KiB are cached; larger ones come from the heap each time.
inline constexpr std::size_t kFrameClasses = 64;
// Each class caches at most this many bytes per thread (at least kMinCachedFrames frames):
// with 64 classes that bounds a thread's cache at 16 MiB in the worst case, and a typical
// program uses two or three classes.
inline constexpr std::size_t kCacheBytesPerClass = 256 * 1024;
inline constexpr std::uint32_t kMinCachedFrames = 64;

struct FreeFrame {
  FreeFrame* next;
};

// Trivially constructible and destructible, so that access from inline code is a plain
// thread-local load with no init guard; the cleanup at thread exit is registered on the
// first cache miss (see frame_allocator.cpp).
struct FrameCache {
  FreeFrame* head[kFrameClasses];
  std::uint32_t count[kFrameClasses];
  bool cleanup_registered;
};
inline thread_local FrameCache tl_frame_cache;

void* allocate_frame_slow(std::size_t size_class);
void release_frame_slow(void* frame, std::size_t size_class) noexcept;
void* allocate_large_frame(std::size_t bytes);
void release_large_frame(void* frame, std::size_t bytes) noexcept;

inline constexpr std::uint32_t max_cached_frames(std::size_t size_class) {
  const std::size_t by_bytes = kCacheBytesPerClass / (size_class * kFrameGranule);
  return by_bytes > kMinCachedFrames ? static_cast<std::uint32_t>(by_bytes) : kMinCachedFrames;
}

inline void* allocate_frame(std::size_t bytes) {
  const std::size_t c = (bytes + kFrameGranule - 1) / kFrameGranule;
  if (c < kFrameClasses) [[likely]] {
    FrameCache& cache = tl_frame_cache;
    if (FreeFrame* f = cache.head[c]) [[likely]] {
      cache.head[c] = f->next;
      --cache.count[c];
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
    if (cache.count[c] < max_cached_frames(c) && cache.cleanup_registered) [[likely]] {
      auto* f = static_cast<FreeFrame*>(frame);
      f->next = cache.head[c];
      cache.head[c] = f;
      ++cache.count[c];
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
