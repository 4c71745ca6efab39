// Work that arrives from outside the runtime's workers (submit, block_on, wake-ups from
// foreign threads). A mutex-protected FIFO: it is off the fork-join path, and a mutex keeps it
// simple and fair. An atomic length lets idle workers look at it without taking the lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <mutex>
#include "weft/detail/atomic_shim.hpp"

namespace weft::detail {

class InjectionQueue {
 public:
  // Pushes `item`, then runs `after()` before any worker can take it.
  template <class After>
  void push_and(void* item, After after) {
    std::lock_guard<std::mutex> lock(mutex_);
    items_.push_back(item);
    // Relaxed under the lock; the parking protocol orders it with a fence (parking.cpp).
    length_.store(items_.size(), std::memory_order_relaxed);
    after();
  }

  void* try_pop() {
    if (length_.load(std::memory_order_relaxed) == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    if (items_.empty()) return nullptr;
    void* item = items_.front();
    items_.pop_front();
    length_.store(items_.size(), std::memory_order_relaxed);
    return item;
  }

  // seq_cst: the load a parking worker makes after announcing itself (parking.cpp).
  bool empty_seq_cst() const { return length_.load(std::memory_order_seq_cst) == 0; }

 private:
  std::mutex mutex_;
  std::deque<void*> items_;
  detail::atomic<std::size_t> length_{0};
};

}  // namespace weft::detail
