// weft/detail/frame_allocator.hpp: coroutine frames are recycled through per-thread caches, so
// that spawning in steady state allocates nothing. This binary replaces the global operator
// new/delete with counting versions to check that (under TSan, which forbids replacing them, it
// counts through the sanitizer's allocator hooks).
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#define WEFT_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TEST_TSAN 1
#endif
#endif

namespace {
std::atomic<std::uint64_t> g_news{0};
std::atomic<std::uint64_t> g_deletes{0};
}  // namespace

#if defined(WEFT_TEST_TSAN)
// TSan's runtime defines the global operator new/delete itself (strong symbols): they cannot be
// replaced. Its allocator hooks count every heap allocation instead (malloc and new alike).
#include <sanitizer/allocator_interface.h>

namespace {
void count_malloc(const volatile void*, std::size_t) {
  g_news.fetch_add(1, std::memory_order_relaxed);
}
void count_free(const volatile void* p) {
  if (p != nullptr) g_deletes.fetch_add(1, std::memory_order_relaxed);
}
const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
}  // namespace
#else
namespace {
void* counted_alloc(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t a) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  const std::size_t align = static_cast<std::size_t>(a);
  const std::size_t size = (n == 0 ? align : (n + align - 1) / align * align);
  if (void* p = std::aligned_alloc(align, size)) return p;
  throw std::bad_alloc();
}
void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_deletes.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}
}  // namespace

// Replacements of the global allocation functions ([replacement.functions]).
void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_aligned_alloc(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_aligned_alloc(n, a); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
#endif

namespace {

using weft::Runtime;
using weft::Task;
using weft::detail::allocate_frame;
using weft::detail::frame_heap_allocations;
using weft::detail::kFrameGranule;
using weft::detail::kCacheBytesPerThread;
using weft::detail::release_frame;

std::uint64_t news() { return g_news.load(std::memory_order_relaxed); }
std::uint64_t deletes() { return g_deletes.load(std::memory_order_relaxed); }

Task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await weft::safe_gather(fib(n - 1), fib(n - 2));
  co_return a + b;
}

// Number of calls fib(n) makes: 2 * F(n + 1) - 1.
constexpr std::uint64_t fib_calls(int n) {
  std::uint64_t a = 0;
  std::uint64_t b = 1;
  for (int i = 0; i < n + 1; ++i) {
    const std::uint64_t c = a + b;
    a = b;
    b = c;
  }
  return 2 * a - 1;
}
static_assert(fib_calls(1) == 1 && fib_calls(2) == 3 && fib_calls(3) == 5);

TEST(FrameAllocator, TheCountingAllocatorOfThisTestSeesAllocations) {
#if defined(WEFT_TEST_TSAN)
  ASSERT_NE(g_hooks_installed, 0) << "TSan's allocator hooks could not be installed";
#endif
  const std::uint64_t before = news();
  const std::uint64_t deletes_before = deletes();
  // Called directly: a new-expression's allocation may be elided by the optimiser.
  void* p = ::operator new(sizeof(int));
  EXPECT_EQ(news(), before + 1);
  ::operator delete(p);
  EXPECT_EQ(deletes(), deletes_before + 1);
}

TEST(FrameAllocator, AReleasedFrameIsReusedByTheNextAllocationOfItsSizeClass) {
  void* p = allocate_frame(200);
  std::memset(p, 0xab, 200);
  release_frame(p, 200);
  void* q = allocate_frame(200);
  EXPECT_EQ(q, p);
  release_frame(q, 200);
  // Same class (200 and 210 both round up to 7 granules): same block.
  void* r = allocate_frame(210);
  EXPECT_EQ(r, p);
  release_frame(r, 210);
}

TEST(FrameAllocator, RecycledFramesDoNotReachTheHeap) {
  // Warm the cache of this thread's class for 300-byte frames.
  std::vector<void*> frames;
  for (int i = 0; i < 32; ++i) frames.push_back(allocate_frame(300));
  for (void* f : frames) release_frame(f, 300);
  frames.clear();

  const std::uint64_t news_before = news();
  const std::uint64_t heap_before = frame_heap_allocations();
  for (int round = 0; round < 1000; ++round) {
    for (int i = 0; i < 32; ++i) frames.push_back(allocate_frame(300));
    for (void* f : frames) release_frame(f, 300);
    frames.clear();
  }
  EXPECT_EQ(news() - news_before, 0u);
  EXPECT_EQ(frame_heap_allocations() - heap_before, 0u);
}

TEST(FrameAllocator, FramesOfDifferentSizeClassesAreDistinctAndAligned) {
  void* small = allocate_frame(64);
  void* medium = allocate_frame(512);
  void* large = allocate_frame(2000);
  EXPECT_NE(small, medium);
  EXPECT_NE(medium, large);
  for (void* p : {small, medium, large})
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % __STDCPP_DEFAULT_NEW_ALIGNMENT__, 0u);
  std::memset(small, 1, 64);
  std::memset(medium, 2, 512);
  std::memset(large, 3, 2000);
  EXPECT_EQ(static_cast<unsigned char*>(small)[63], 1);
  EXPECT_EQ(static_cast<unsigned char*>(medium)[0], 2);
  EXPECT_EQ(static_cast<unsigned char*>(large)[1999], 3);
  release_frame(small, 64);
  release_frame(medium, 512);
  release_frame(large, 2000);
}

TEST(FrameAllocator, LargeFramesComeFromTheHeapAndWork) {
  constexpr std::size_t kBytes = 64 * 1024;
  const std::uint64_t heap_before = frame_heap_allocations();
  void* p = allocate_frame(kBytes);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(frame_heap_allocations() - heap_before, 1u) << "frames over 2 KiB are not cached";
  std::memset(p, 0x5a, kBytes);
  EXPECT_EQ(static_cast<unsigned char*>(p)[kBytes - 1], 0x5a);
  const std::uint64_t deletes_before = deletes();
  release_frame(p, kBytes);
  EXPECT_EQ(deletes() - deletes_before, 1u) << "a large frame goes straight back to the heap";
}

TEST(FrameAllocator, EachThreadsCacheIsBoundedInBytesAcrossSizeClasses) {
  constexpr std::size_t kBytes = 512;  // a multiple of the granule: no rounding
  static_assert(kBytes % kFrameGranule == 0 && kCacheBytesPerThread % (2 * kBytes) == 0);
  constexpr std::size_t kFit = kCacheBytesPerThread / kBytes;
  // On a fresh thread, so that nothing else is cached. Half the budget in 512-byte frames and
  // half in 1 KiB frames fills it; everything beyond goes back to the heap.
  std::thread([&] {
    std::vector<void*> small, large;
    for (std::size_t i = 0; i < kFit / 2 + 10; ++i) small.push_back(allocate_frame(kBytes));
    for (std::size_t i = 0; i < kFit / 4 + 10; ++i) large.push_back(allocate_frame(2 * kBytes));
    const std::uint64_t deletes_before = deletes();
    for (std::size_t i = 0; i < kFit / 2; ++i) release_frame(small[i], kBytes);
    EXPECT_EQ(deletes() - deletes_before, 0u) << "half the budget in 512-byte frames fits";
    for (void* f : large) release_frame(f, 2 * kBytes);
    EXPECT_EQ(deletes() - deletes_before, 10u) << "the other half in 1 KiB frames, not more";
    for (std::size_t i = kFit / 2; i < small.size(); ++i) release_frame(small[i], kBytes);
    EXPECT_EQ(deletes() - deletes_before, 20u) << "a full budget takes no class's frames";
    // Taking a frame out makes room for one again.
    void* again = allocate_frame(kBytes);
    const std::uint64_t deletes_mid = deletes();
    release_frame(again, kBytes);
    EXPECT_EQ(deletes(), deletes_mid);
  }).join();  // thread exit returns the cached ones (checked by LeakSanitizer)
}

TEST(FrameAllocator, FramesFreedOnAnotherThreadAreSafeToReuse) {
  std::vector<void*> frames;
  std::thread([&] {
    for (int i = 0; i < 100; ++i) frames.push_back(allocate_frame(256));
  }).join();
  std::thread([&] {
    for (void* f : frames) release_frame(f, 256);
    // This thread's cache now holds them: it reuses them without the heap.
    const std::uint64_t heap_before = frame_heap_allocations();
    std::vector<void*> again;
    for (int i = 0; i < 100; ++i) again.push_back(allocate_frame(256));
    EXPECT_EQ(frame_heap_allocations() - heap_before, 0u);
    for (void* f : again) std::memset(f, 0, 256);
    for (void* f : again) release_frame(f, 256);
  }).join();
}

Task<int> big_frame(int seed) {
  std::array<unsigned char, 8192> buffer;  // alive across the await: part of the frame
  buffer.fill(static_cast<unsigned char>(seed));
  co_await fib(3);
  int sum = 0;
  for (unsigned char c : buffer) sum += c;
  co_return sum;
}

TEST(FrameAllocator, TasksWithLargeFramesRun) {
  Runtime rt({.workers = 2});
  for (int seed = 0; seed < 20; ++seed) EXPECT_EQ(rt.block_on(big_frame(seed)), seed * 8192);
  const int total = rt.block_on([]() -> Task<int> {
    auto [a, b, c] = co_await weft::safe_gather(big_frame(1), big_frame(2), big_frame(3));
    co_return a + b + c;
  }());
  EXPECT_EQ(total, 6 * 8192);
}

TEST(FrameAllocator, SteadyStateFibPerformsNoHeapAllocationPerTask) {
  constexpr int kN = 22;
  constexpr std::uint64_t kTasks = fib_calls(kN);  // 57313
  for (unsigned workers : {1u, 2u}) {
    Runtime rt({.workers = workers});
    EXPECT_EQ(rt.block_on(fib(20)), 6765);  // warm up: fills the workers' frame caches

    const std::uint64_t news_before = news();
    const std::uint64_t heap_before = rt.stats().frame_heap_allocations;
    const std::uint64_t frames_before = frame_heap_allocations();
    EXPECT_EQ(rt.block_on(fib(kN)), 17711);
    const std::uint64_t global_news = news() - news_before;
    const std::uint64_t frame_news = frame_heap_allocations() - frames_before;

    // block_on itself allocates a little per call (root state, ...); never per task.
    EXPECT_LT(global_news, kTasks / 100) << workers << " workers: global allocations";
    EXPECT_LT(frame_news, kTasks / 100) << workers << " workers: frames from the heap";
    EXPECT_EQ(rt.stats().frame_heap_allocations - heap_before, frame_news);
    std::printf("%u workers: %llu tasks, %llu global allocations, %llu heap frames\n", workers,
                static_cast<unsigned long long>(kTasks),
                static_cast<unsigned long long>(global_news),
                static_cast<unsigned long long>(frame_news));
  }
}

}  // namespace
