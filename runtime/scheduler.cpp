// The worker loop, stealing, roots and statistics. Parking is in parking.cpp.
#include "scheduler.hpp"

#include <pthread.h>
#include <sched.h>

#include <cstdio>
#include <exception>
#include <string>
#include <system_error>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/join_state.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/detail/testing.hpp"
#include "weft/task.hpp"

namespace weft::detail {
namespace {

// A worker that finds its own deque empty searches this many rounds (every victim and the
// injection queue per round) before parking: about 10-30 us here, long enough to catch the
// next child of a busy fork-join, short enough that an idle runtime goes quiet at once.
constexpr unsigned kSearchRounds = 32;
constexpr unsigned kPausesPerRound = 16;
// Every this many tasks a worker looks at the injection queue before its own deque, so that
// submissions from outside are not starved by a worker that always has local work. Prime, so
// that it does not fall into step with the fan-out of a regular recursion.
constexpr std::uint32_t kInjectionCheckInterval = 61;


inline std::uint64_t next_random(std::uint64_t& state) noexcept {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

}  // namespace

void prepare_parking();  // parking.cpp

Scheduler::Scheduler(const RuntimeOptions& options)
    : blocking_(options.name + "-blk", options.max_blocking_threads, options.blocking_keep_alive),
      timers_(options.name + "-tmr") {
  prepare_parking();
  unsigned n = options.workers != 0 ? options.workers : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  workers_.reserve(n);
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(*this, i, idle_));
  threads_.reserve(n);
  try {
    for (auto& w : workers_) start_thread(*w, options);
  } catch (const std::system_error& e) {
    // Joinable std::threads destroyed while unwinding would std::terminate: stop and join the
    // workers that did start (they have no work: nothing was submitted yet), then report.
    stop_and_join_workers();
    throw std::system_error(e.code(), "weft: Runtime could start only " +
                                          std::to_string(threads_.size()) + " of its " +
                                          std::to_string(n) + " worker threads");
  }
}

Scheduler::~Scheduler() {
  // First, while the workers still run: a call that ends may still have a task to resume.
  blocking_.shutdown();
  // Every task has ended, so no timer is armed; a callback may still be returning from its
  // last injection.
  timers_.stop();
  stop_and_join_workers();
}

void Scheduler::stop_and_join_workers() noexcept {
  stopping_.store(true, std::memory_order_seq_cst);
  // Orders the store before wake_all()'s loads of park_state (Dekker with park()'s S1/S4).
  detail::thread_fence(std::memory_order_seq_cst);
  wake_all();
  for (std::thread& t : threads_) t.join();
}

// detail/testing.hpp: how many more worker threads may start before one fails; -1: no limit.
// Relaxed: a test sets it before it constructs the Runtime, on the same thread.
static std::atomic<long> g_worker_starts_before_failure{-1};

void testing::fail_worker_thread_start_after(unsigned started) noexcept {
  g_worker_starts_before_failure.store(started, std::memory_order_relaxed);
}

void Scheduler::start_thread(Worker& w, const RuntimeOptions& options) {
  // The test seam (detail/testing.hpp): one relaxed load per thread started.
  if (long left = g_worker_starts_before_failure.load(std::memory_order_relaxed); left >= 0)
      [[unlikely]] {
    g_worker_starts_before_failure.store(left - 1, std::memory_order_relaxed);
    if (left == 0)
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                              "thread start refused by the test seam");
  }
  std::string name = options.name + "-w" + std::to_string(w.index);
  const bool pin = options.pin_workers;
  threads_.emplace_back([this, &w, name = std::move(name), pin] {
    // Linux thread names hold 15 characters.
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    if (pin) {
      const unsigned cpus = std::thread::hardware_concurrency();
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(w.index % (cpus == 0 ? 1 : cpus), &set);
      pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    run_worker(w);
  });
}

void Scheduler::run_worker(Worker& w) {
  tl_worker = &w;
  perturb::set_worker_slot(w.index);  // test builds only (perturb.hpp)
  w.rng_state = 0x9e3779b97f4a7c15ULL * (w.index + 1);
  while (void* item = find_work(w)) {
    bump(w.counters.tasks_run);
    std::coroutine_handle<>::from_address(item).resume();
    // No task runs on this thread until the next resume: it may be gone.
    tl_current_task = nullptr;
    // Control is back in the loop: no fork on this worker is running inline any more.
    settle_open_runs(w);
  }
  tl_worker = nullptr;
}

void* Scheduler::find_work(Worker& w) {
  if (++w.tick % kInjectionCheckInterval == 0) {
    if (void* item = injected_.try_pop()) return item;
  }
  if (void* item = w.deque.pop()) return item;
  for (;;) {
    for (unsigned round = 0; round < kSearchRounds; ++round) {
      // Alternate which source goes first after taking from the injection queue: a task
      // that keeps yielding (re-queued there) must not hide the work other workers could
      // give us, nor stealable work hide submissions for long.
      if (w.last_from_injection) {
        w.last_from_injection = false;
        if (void* item = try_steal(w)) return item;
      }
      if (void* item = injected_.try_pop()) {
        w.last_from_injection = true;
        return item;
      }
      if (void* item = try_steal(w)) return item;
      // Relaxed: shutdown only starts once every root has finished, so there is no work
      // this flag must be ordered with; park() rechecks it with the full protocol.
      if (stopping_.load(std::memory_order_relaxed)) return nullptr;
      for (unsigned i = 0; i < kPausesPerRound; ++i) cpu_relax();
    }
    park(w);
    if (void* item = w.deque.pop()) return item;  // pushed by settle or schedule() meanwhile
  }
}

void* Scheduler::try_steal(Worker& w) {
  const std::size_t n = workers_.size();
  if (n < 2) return nullptr;
  std::size_t start = next_random(w.rng_state) % n;
  bool backwards = false;
  // Test builds only (perturb.hpp): the victim order comes from the seeded draws.
  if (perturb::kEnabled && perturb::active()) {
    const perturb::StealOrder order = perturb::steal_order(n);
    start = order.start;
    backwards = order.backwards;
  }
  for (std::size_t k = 0; k < n; ++k) {
    Worker& victim = *workers_[(backwards ? start + n - k : start + k) % n];
    if (&victim == &w) continue;
    bump(w.counters.steal_attempts);
    if (void* item = victim.deque.steal().item) {
      bump(w.counters.steals);
      return item;
    }
  }
  return nullptr;
}

bool Scheduler::work_visible() const {
  if (!injected_.empty_seq_cst()) return true;
  for (const auto& w : workers_)
    if (!w->deque.empty_hint()) return true;
  return false;
}

void Scheduler::inject(std::coroutine_handle<> h) {
  // The wake-up happens inside the queue's critical section: until it ends no worker can
  // take `h`, so `h` cannot run, finish, and let ~Runtime free this scheduler while a thread
  // from outside is still in here.
  injected_.push_and(h.address(), [this] {
    // Pairs with the parking protocol (parking.cpp): publish, full fence, check for sleepers.
    detail::thread_fence(std::memory_order_seq_cst);
    if (idle_.sleepers.load(std::memory_order_relaxed) != 0) wake_one(nullptr);
  });
}

void schedule(Scheduler& s, std::coroutine_handle<> h) {
  Worker* w = tl_worker;
  if (s.is_own_worker(w)) {
    w->deque.push(h.address());
    notify_work_published(*w);
  } else {
    s.inject(h);
  }
}

bool yield_to_others(std::coroutine_handle<> h) {
  // The injection queue is FIFO and every worker looks at it: everything already waiting
  // runs before `h` comes around again.
  Worker* w = tl_worker;
  if (w == nullptr) return false;
  w->scheduler.inject(h);
  return true;
}

bool Scheduler::add_root(RootStateBase& root) {
  std::lock_guard<std::mutex> lock(roots_mutex_);
  // Refused once shutdown began: a root accepted now would be waited for too, and a stream of
  // them (a shielded task starts even when cancelled) could delay ~Runtime without bound.
  if (closing_) return false;
  root.next = roots_;
  if (roots_ != nullptr) roots_->prev = &root;
  roots_ = &root;
  ++live_roots_;
  return true;
}

void Scheduler::remove_root(RootStateBase& root) noexcept {
  std::lock_guard<std::mutex> lock(roots_mutex_);
  if (root.prev != nullptr) root.prev->next = root.next;
  else roots_ = root.next;
  if (root.next != nullptr) root.next->prev = root.prev;
  if (--live_roots_ == 0) roots_done_.notify_all();
}

void Scheduler::cancel_roots_and_wait() {
  // Cancelling runs callbacks (user code, wake-ups) that may submit or finish roots, which
  // takes roots_mutex_: so collect the roots under the lock, each with a reference that keeps
  // it alive, and cancel them outside it.
  std::vector<RootStateBase*> live;
  {
    std::lock_guard<std::mutex> lock(roots_mutex_);
    closing_ = true;
    for (RootStateBase* r = roots_; r != nullptr; r = r->next) {
      r->refs.fetch_add(1, std::memory_order_relaxed);  // we hold the list's view of it
      live.push_back(r);
    }
  }
  for (RootStateBase* r : live) {
    // A root that has ended but not yet left the list has nothing left to cancel (its
    // token keeps its state).
    if (!r->is_done()) r->cancel.cancel();
    r->release();
  }
  std::unique_lock<std::mutex> lock(roots_mutex_);
  roots_done_.wait(lock, [&] { return live_roots_ == 0; });
}

void root_finished(Scheduler& s, RootStateBase& root) noexcept {
  s.remove_root(root);  // after this the scheduler may be destroyed: touch it no more
  root.release();
}

RuntimeStats Scheduler::stats() const {
  RuntimeStats out;
  out.workers.reserve(workers_.size());
  for (const auto& w : workers_) {
    const WorkerCounters& c = w->counters;
    // Relaxed: independent statistics, each monotonic.
    out.workers.push_back(WorkerStats{c.tasks_run.load(std::memory_order_relaxed),
                                      c.tasks_spawned.load(std::memory_order_relaxed),
                                      c.steals.load(std::memory_order_relaxed),
                                      c.steal_attempts.load(std::memory_order_relaxed),
                                      c.parks.load(std::memory_order_relaxed)});
  }
  out.frame_heap_allocations = frame_heap_allocations();
  out.blocking_threads = blocking_.live_threads();
  out.timers_armed = timers_.armed();
  return out;
}

}  // namespace weft::detail
