// The one door through which weft's protocol atomics go (issue 10, lane 2).
//
// weft::detail::atomic<T> is what the runtime's protocols (the deque, parking, the join and
// group hand-offs, cancellation scopes, waiters, the semaphore, wait_any, roots) declare their
// shared words as, and weft::detail::thread_fence() is what they fence with.
//
//   - Normal builds (the shipped library, the benchmarks, every ordinary test): atomic<T> IS
//     std::atomic<T> (an alias template, not a wrapper) and thread_fence() is
//     std::atomic_thread_fence: the generated code is the same as before, bit for bit, and
//     there is no cost per task.
//   - Perturbation builds (WEFT_PERTURB defined: the weft_*_perturb test libraries only):
//     atomic<T> derives from std::atomic<T>, adds no member, and calls a seeded perturbation
//     point (weft/detail/perturb.hpp) before each operation (and after each store and
//     read-modify-write): the thread may yield its CPU or spin a little there, so that
//     interleavings that are rare in ordinary runs happen in ordinary test runs.
//   - A model checker (Relacy, CDSChecker-style) could replace the perturbation build's class
//     by its own instrumented atomic here, in one place, without touching the protocols.
//
// Statistics counters and configuration words that no protocol depends on stay plain
// std::atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#ifdef WEFT_PERTURB
#include "weft/detail/perturb.hpp"
#endif

namespace weft::detail {

#ifndef WEFT_PERTURB

template <class T>
using atomic = std::atomic<T>;

inline void thread_fence(std::memory_order order) noexcept { std::atomic_thread_fence(order); }

// The shipped build's promise: the very same type, so the very same code.
static_assert(std::is_same_v<atomic<std::int64_t>, std::atomic<std::int64_t>>);

#else

template <class T>
class atomic : public std::atomic<T> {
  using base = std::atomic<T>;
  static constexpr std::memory_order kSeqCst = std::memory_order_seq_cst;

 public:
  atomic() noexcept = default;
  constexpr atomic(T value) noexcept : base(value) {}  // NOLINT: as std::atomic's
  atomic(const atomic&) = delete;
  atomic& operator=(const atomic&) = delete;

  T load(std::memory_order order = kSeqCst) const noexcept {
    perturb::at_atomic();
    return base::load(order);
  }
  operator T() const noexcept { return load(); }  // NOLINT: as std::atomic's
  void store(T value, std::memory_order order = kSeqCst) noexcept {
    perturb::at_atomic();
    base::store(value, order);
    perturb::at_atomic();
  }
  T operator=(T value) noexcept {
    store(value);
    return value;
  }
  T exchange(T value, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::exchange(value, order); });
  }
  bool compare_exchange_weak(T& expected, T desired, std::memory_order success,
                             std::memory_order failure) noexcept {
    return around([&] { return base::compare_exchange_weak(expected, desired, success, failure); });
  }
  bool compare_exchange_weak(T& expected, T desired, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::compare_exchange_weak(expected, desired, order); });
  }
  bool compare_exchange_strong(T& expected, T desired, std::memory_order success,
                               std::memory_order failure) noexcept {
    return around([&] { return base::compare_exchange_strong(expected, desired, success, failure); });
  }
  bool compare_exchange_strong(T& expected, T desired, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::compare_exchange_strong(expected, desired, order); });
  }
  // Integral and pointer atomics only, as std::atomic's (a template: never instantiated for
  // the other types).
  template <class D>
  T fetch_add(D delta, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::fetch_add(delta, order); });
  }
  template <class D>
  T fetch_sub(D delta, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::fetch_sub(delta, order); });
  }
  template <class D>
  T fetch_or(D bits, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::fetch_or(bits, order); });
  }
  template <class D>
  T fetch_and(D bits, std::memory_order order = kSeqCst) noexcept {
    return around([&] { return base::fetch_and(bits, order); });
  }
  void wait(T old, std::memory_order order = kSeqCst) const noexcept {
    perturb::at_atomic();
    base::wait(old, order);
  }
  void notify_one() noexcept {
    perturb::at_atomic();
    base::notify_one();
  }
  void notify_all() noexcept {
    perturb::at_atomic();
    base::notify_all();
  }

 private:
  template <class F>
  static auto around(F op) noexcept {
    perturb::at_atomic();
    auto result = op();
    perturb::at_atomic();
    return result;
  }
};

inline void thread_fence(std::memory_order order) noexcept {
  perturb::at_atomic();
  std::atomic_thread_fence(order);
}

#endif

// The perturbation build must not change any layout: headers are shared with code built
// without it.
static_assert(sizeof(atomic<long>) == sizeof(std::atomic<long>));
static_assert(alignof(atomic<void*>) == alignof(std::atomic<void*>));

}  // namespace weft::detail
