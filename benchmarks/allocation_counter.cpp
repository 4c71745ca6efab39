// The global operator new and delete of the benchmarks that report heap allocations: malloc and
// free, plus one count per allocation (allocation_counter.hpp).
#include "allocation_counter.hpp"

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {

thread_local weft_bench::ThreadAllocationCounter* tl_counter = nullptr;

void count_one() noexcept {
  weft_bench::ThreadAllocationCounter* c = tl_counter;
  if (c == nullptr) [[unlikely]] {
    // malloc, not new: this runs inside operator new. Never freed (see the header).
    void* raw = std::malloc(sizeof(weft_bench::ThreadAllocationCounter));
    if (raw == nullptr) return;
    c = ::new (raw) weft_bench::ThreadAllocationCounter;
    auto& head = weft_bench::g_allocation_counters;
    c->next = head.load(std::memory_order_relaxed);
    // Release: publishes the counter's fields to heap_allocations()' acquire load.
    while (!head.compare_exchange_weak(c->next, c, std::memory_order_release,
                                       std::memory_order_relaxed)) {
    }
    tl_counter = c;
  }
  c->count.store(c->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void* allocate(std::size_t n, std::size_t alignment) {
  count_one();
  if (n == 0) n = 1;
  void* p = alignment <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(alignment, (n + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* allocate_nothrow(std::size_t n) noexcept {
  try {
    return allocate(n, 0);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

std::uint64_t weft_bench::thread_heap_allocations() noexcept {
  return tl_counter == nullptr ? 0 : tl_counter->count.load(std::memory_order_relaxed);
}

void* operator new(std::size_t n) { return allocate(n, 0); }
void* operator new[](std::size_t n) { return allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return allocate(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate_nothrow(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate_nothrow(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
