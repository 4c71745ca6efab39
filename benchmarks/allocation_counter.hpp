// Counts every allocation the process makes through operator new (allocation_counter.cpp
// replaces the global operator new in the binaries that link it), so that a benchmark can
// report heap allocations per task for every runtime, frames and containers alike, and a test
// can assert that a path allocates nothing.
//
// Each thread counts in a counter of its own (a relaxed load and store: no locked instruction,
// no shared cache line on the allocation path); the first allocation of a thread links its
// counter into a process-wide list, which heap_allocations() sums. Counters are never freed, so
// the counts of threads that have exited stay in the sum.
#pragma once

#include <atomic>
#include <cstdint>

namespace weft_bench {

struct ThreadAllocationCounter {
  std::atomic<std::uint64_t> count{0};  // written by its thread only; read relaxed by the sum
  ThreadAllocationCounter* next = nullptr;
};

// Every thread's counter, newest first. Release push / acquire read: the sum sees a counter's
// initialised fields.
inline std::atomic<ThreadAllocationCounter*> g_allocation_counters{nullptr};

// Allocations through operator new in the whole process so far.
inline std::uint64_t heap_allocations() noexcept {
  std::uint64_t total = 0;
  for (ThreadAllocationCounter* c = g_allocation_counters.load(std::memory_order_acquire);
       c != nullptr; c = c->next)
    total += c->count.load(std::memory_order_relaxed);
  return total;
}

// Allocations through operator new made by the calling thread so far.
std::uint64_t thread_heap_allocations() noexcept;

}  // namespace weft_bench
