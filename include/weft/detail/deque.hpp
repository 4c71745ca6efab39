// A Chase-Lev work-stealing deque with a growable ring.
//
// Protocol (Chase & Lev, SPAA 2005; memory orders after Lê, Pop, Cohen & Zappa Nardelli,
// PPoPP 2013):
//   - One owner thread calls push() and pop() at the bottom end; any number of thieves call
//     steal() at the top end.
//   - Indices grow monotonically: the live items are [top, bottom). A slot index is taken
//     modulo the ring's capacity, so growth copies [top, bottom) into a twice-larger ring at
//     the same indices.
//   - An item is taken exactly once: thieves race on a CAS of `top_`; the owner takes the
//     bottom item without a CAS unless it is the last one, when it joins the same CAS race.
//
// Invariants:
//   - top_ only increases (CAS by thieves, or by the owner for the last item).
//   - Only the owner writes bottom_ and ring_.
//   - A retired ring is kept alive until the deque is destroyed, because a thief that loaded
//     the old ring pointer may still read one slot from it (that read is then discarded by the
//     failed CAS, or it read the same value the new ring holds).
//
// Cost on the owner's hot path (x86-64, clang): push is plain stores (a release store is a
// plain mov); pop is one `xchg` (the seq_cst store of bottom_), because the owner must order
// its write of bottom_ before its read of top_ against a concurrent thief. Lê et al. write this
// as a relaxed store followed by a seq_cst fence, which clang compiles to `mfence`: about four
// times the cost of the locked exchange here. The two forms give the same guarantee in the
// C++20 model ([atomics.order]/4): see the comment in pop().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>
#include "weft/detail/atomic_shim.hpp"

namespace weft::detail {

inline constexpr std::size_t kCacheLine = 64;

template <class T>
class WorkStealingDeque {
  static_assert(std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>,
                "items are copied racily by thieves and must be plain values");

 public:
  // 256 slots (2 KiB of pointers) covers the deque depth of deep fork-join recursion
  // (one item per open level); a wide gather grows the ring once and keeps it.
  static constexpr std::int64_t kInitialCapacity = 256;

  explicit WorkStealingDeque(std::int64_t capacity = kInitialCapacity)
      : ring_(new Ring(round_up_pow2(capacity))) {
    retired_.emplace_back(ring_.load(std::memory_order_relaxed));
  }
  WorkStealingDeque(const WorkStealingDeque&) = delete;
  WorkStealingDeque& operator=(const WorkStealingDeque&) = delete;
  ~WorkStealingDeque() = default;  // retired_ owns every ring, the live one included

  // Owner only.
  void push(T item) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    // Acquire pairs with the thieves' CAS on top_: once we see their increment we may
    // overwrite the slot they took.
    const std::int64_t t = top_.load(std::memory_order_acquire);
    Ring* ring = ring_.load(std::memory_order_relaxed);
    if (b - t >= ring->capacity) [[unlikely]] ring = grow(ring, t, b);
    ring->put(b, item);
    // Release pairs with the acquire load of bottom_ in steal(): a thief that sees the new
    // bottom also sees the slot (and everything the owner wrote before pushing).
    bottom_.store(b + 1, std::memory_order_release);
  }

  // Owner only. Returns T{} when empty.
  T pop() {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    Ring* ring = ring_.load(std::memory_order_relaxed);
    // The seq_cst store and the seq_cst load below are ordered in the single total order S,
    // and S also orders the seq_cst fence in steal() and the CAS on top_. So either a thief's
    // load of bottom_ (after its fence) sees b, or our load of top_ sees every increment that
    // thief's earlier read of top_ saw: a thief and the owner never both take the item at b
    // without meeting at the CAS.
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {  // empty: restore
      bottom_.store(b + 1, std::memory_order_relaxed);
      return T{};
    }
    T item = ring->get(b);
    if (t == b) {  // last item: race the thieves for it
      // seq_cst pairs with the thieves' CAS (one winner per index).
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
        item = T{};
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return item;
  }

  struct StealResult {
    T item{};
    bool lost_race = false;  // the deque was not empty but another thread took the item
  };

  // Any thread.
  StealResult steal() {
    // Acquire pairs with the CAS of the thread that last took an item, so the slot we read
    // below is not one the owner has since refilled for a different index.
    std::int64_t t = top_.load(std::memory_order_acquire);
    // Orders our read of top_ before our read of bottom_ in S (see pop()).
    detail::thread_fence(std::memory_order_seq_cst);
    // Acquire pairs with the release store in push(): the slot's contents are visible.
    const std::int64_t b = bottom_.load(std::memory_order_acquire);
    if (t >= b) return {};
    // Acquire pairs with the release store in grow(): the new ring's slots are visible.
    Ring* ring = ring_.load(std::memory_order_acquire);
    T item = ring->get(t);
    // seq_cst: one winner per index, against other thieves and the owner's last-item CAS.
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed))
      return {T{}, true};
    return {item, false};
  }

  // Owner only: the index the next push will use. Lets the owner recognise its own items
  // (see JoinState::child_done).
  std::int64_t bottom_index() const { return bottom_.load(std::memory_order_relaxed); }

  // Any thread; a snapshot that may be stale by the time it returns.
  std::int64_t size_hint() const {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t t = top_.load(std::memory_order_relaxed);
    return b > t ? b - t : 0;
  }
  bool empty_hint() const { return size_hint() == 0; }

  std::int64_t capacity() const { return ring_.load(std::memory_order_relaxed)->capacity; }

 private:
  struct Ring {
    explicit Ring(std::int64_t cap)
        : capacity(cap), mask(cap - 1), slots(new detail::atomic<T>[static_cast<std::size_t>(cap)]) {}
    // Slots are atomics accessed relaxed: a thief may read a slot the owner is rewriting
    // after wrap-around; the CAS on top_ then fails and the value is discarded.
    void put(std::int64_t i, T v) { slots[i & mask].store(v, std::memory_order_relaxed); }
    T get(std::int64_t i) const { return slots[i & mask].load(std::memory_order_relaxed); }
    const std::int64_t capacity;
    const std::int64_t mask;
    std::unique_ptr<detail::atomic<T>[]> slots;
  };

  static std::int64_t round_up_pow2(std::int64_t n) {
    std::int64_t c = 2;
    while (c < n) c <<= 1;
    return c;
  }

  Ring* grow(Ring* old, std::int64_t t, std::int64_t b) {
    auto bigger = std::make_unique<Ring>(old->capacity * 2);
    for (std::int64_t i = t; i < b; ++i) bigger->put(i, old->get(i));
    Ring* fresh = bigger.get();
    retired_.push_back(std::move(bigger));
    // Release pairs with the acquire load in steal(): a thief that sees the new ring sees
    // its copied slots.
    ring_.store(fresh, std::memory_order_release);
    return fresh;
  }

  alignas(kCacheLine) detail::atomic<std::int64_t> top_{0};
  alignas(kCacheLine) detail::atomic<std::int64_t> bottom_{0};
  detail::atomic<Ring*> ring_;
  std::vector<std::unique_ptr<Ring>> retired_;  // owner only
};

}  // namespace weft::detail
