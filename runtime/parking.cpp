// Parking: how idle workers sleep without ever missing work.
//
// Protocol. Publishers (a worker pushing children, a thread injecting a task) do:
//     P1 make the work visible (deque push / injection-queue push)
//     P2 barrier
//     P3 if sleepers != 0: wake one sleeping worker
// A worker that found nothing during its search does:
//     S1 park_state = Sleeping
//     S2 sleepers += 1
//     S3 barrier
//     S4 rescan every deque and the injection queue (and the stop flag); if anything is
//        there, undo S1/S2 and go back to work
//     S5 futex-wait while park_state == Sleeping
// Waking a worker CASes its park_state Sleeping -> Notified (one waker wins), takes it off
// `sleepers`, and futex-wakes it.
//
// Invariant: work published at P1 is seen at S4, or `sleepers` read at P3 includes S2. The
// two barriers make this a Dekker handshake. The publisher's barrier is on the fork path of
// every gather, where a seq_cst fence (mfence, about 23 ns here) would cost more than the rest
// of the spawn. So when the kernel offers membarrier(PRIVATE_EXPEDITED) the publisher's
// barrier is only a compiler fence, and the sleeper's S3 is membarrier(): it makes every other
// running thread of the process execute a full barrier, which orders every publisher's P1
// before its P3 as seen from S4. Sleeping is rare and slow anyway, so the ~1 us syscall is
// paid where it does not matter. Without membarrier, publishers pay the fence
// (g_publisher_needs_fence).
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "scheduler.hpp"
#include "weft/detail/atomic_shim.hpp"

namespace weft::detail {
namespace {

constexpr std::uint32_t kAwake = 0;
constexpr std::uint32_t kSleeping = 1;
constexpr std::uint32_t kNotified = 2;

bool g_have_membarrier = false;
std::once_flag g_barrier_once;

void init_barrier() {
  std::call_once(g_barrier_once, [] {
    const long supported = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    g_have_membarrier = supported > 0 &&
                        (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    g_publisher_needs_fence = !g_have_membarrier;
  });
}

// S3: orders every other thread's earlier stores before our following loads. False when the
// membarrier call failed (it may, with ENOMEM): publishers without a fence may then be
// unseen, and the caller must not sleep without a bound.
bool heavy_barrier() noexcept {
  detail::thread_fence(std::memory_order_seq_cst);
  if (!g_have_membarrier) return true;
  return syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

// After a failed barrier a worker naps this long instead of sleeping until woken, then
// searches again: a missed publication is found within it.
constexpr auto kBarrierFailureNap = std::chrono::microseconds(200);

// Takes `w` off the sleepers if it is still Sleeping; true if this call did.
bool claim_sleeper(Worker& w, IdleCount& idle) noexcept {
  std::uint32_t expected = kSleeping;
  // acq_rel: pairs with the seq_cst store of Sleeping in park(); the sleeper's acquire
  // load of Notified sees the publisher's work.
  if (w.park_state.load(std::memory_order_relaxed) != kSleeping ||
      !w.park_state.compare_exchange_strong(expected, kNotified, std::memory_order_acq_rel,
                                            std::memory_order_relaxed))
    return false;
  // Relaxed: only the count's value matters to publishers; S2/S3 order its increment.
  idle.sleepers.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

}  // namespace

// Written once, by init_barrier(), before the first runtime starts its threads. Until then
// publishers (there are none) would pay the fence: the safe default.
bool g_publisher_needs_fence = true;

void wake_one_sleeper(Worker& publisher) noexcept { publisher.scheduler.wake_one(&publisher); }

void Scheduler::wake_one(Worker* publisher) noexcept {
  const std::size_t n = workers_.size();
  // Start after the publisher, so that wake-ups spread over the workers.
  const std::size_t start = publisher != nullptr ? publisher->index + 1 : 0;
  for (std::size_t k = 0; k < n; ++k) {
    Worker& w = *workers_[(start + k) % n];
    if (claim_sleeper(w, idle_)) {
      w.park_state.notify_one();
      return;
    }
  }
}

void Scheduler::wake_all() noexcept {
  for (auto& w : workers_) {
    if (claim_sleeper(*w, idle_)) w->park_state.notify_one();
  }
}

void Scheduler::park(Worker& w) {
  w.park_state.store(kSleeping, std::memory_order_seq_cst);     // S1
  idle_.sleepers.fetch_add(1, std::memory_order_seq_cst);      // S2
  const bool barrier_held = heavy_barrier();                    // S3
  if (!barrier_held || work_visible() || stopping_.load(std::memory_order_seq_cst)) {  // S4
    if (w.park_state.exchange(kAwake, std::memory_order_acq_rel) == kSleeping)
      idle_.sleepers.fetch_sub(1, std::memory_order_relaxed);
    // else a waker already took us off the count; its wake-up is spent on this work.
    if (!barrier_held) std::this_thread::sleep_for(kBarrierFailureNap);
    return;
  }
  bump(w.counters.parks);
  // S5. Acquire pairs with the waker's CAS (claim_sleeper).
  while (w.park_state.load(std::memory_order_acquire) == kSleeping)
    w.park_state.wait(kSleeping, std::memory_order_acquire);
  w.park_state.store(kAwake, std::memory_order_relaxed);
}

// Called by the Scheduler constructor (scheduler.cpp) before it starts threads.
void prepare_parking() { init_barrier(); }

}  // namespace weft::detail
