// The timer thread and the 4-ary heap behind it (protocol and costs: detail/timer_service.hpp).
#include "weft/detail/timer_service.hpp"

#include <pthread.h>
#include <sys/prctl.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>

#include "scheduler.hpp"
#include "weft/detail/worker.hpp"
#include "weft/errors.hpp"

namespace weft::detail {
namespace {

// The heap's fan-out (see the header: half the levels of a binary heap, children contiguous).
constexpr std::size_t kArity = 4;
// The heap array never shrinks below this many entries (16 KiB): shrinking a small array
// saves nothing worth an allocation.
constexpr std::size_t kMinRetainedCapacity = 1024;
// The timer thread's timer slack. Linux lets a sleeping thread's timed wait expire up to its
// slack late (50 us by default) so that wake-ups can be batched; the timer thread's wake-ups
// are what every timer's lateness is made of, so it asks for 1 us. Costs nothing while no
// timer is armed (the thread then waits with no timeout).
constexpr unsigned long kTimerSlackNs = 1000;

std::size_t parent_of(std::size_t i) noexcept { return (i - 1) / kArity; }
std::size_t first_child_of(std::size_t i) noexcept { return i * kArity + 1; }

// The service whose timer thread this is (null elsewhere).
thread_local const TimerService* tl_timer_service = nullptr;

}  // namespace

bool TimerService::is_own_thread() const noexcept { return tl_timer_service == this; }

TimerService::TimerService(std::string thread_name) : thread_name_(std::move(thread_name)) {}

TimerService::~TimerService() {
  stop();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!heap_.empty()) {
    // A node still armed lives in a frame that is about to be freed (or already was): its
    // task could never be woken, and a later fire would touch freed memory. Not recoverable.
    std::fputs("weft: a timer service was destroyed while timers were still armed\n", stderr);
    std::terminate();
  }
}

void TimerService::stop() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TimerService::start_thread_locked() {
  thread_ = std::thread([this] { run(); });
  thread_id_ = thread_.get_id();
  started_ = true;
}

void TimerService::arm(TimerNode& node, TimerTimePoint when) {
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw UsageError("a timer was armed on a runtime that is shutting down");
    if (node.heap_index != TimerNode::kNotArmed) throw UsageError("a timer was armed twice");
    if (!started_) start_thread_locked();
    heap_.push_back(Entry{when, &node});  // may throw std::bad_alloc: nothing changed yet
    sift_up(heap_.size() - 1, Entry{when, &node});
    // Wake the thread only when it sleeps past the new deadline; record the new time so that
    // later, later-due arms do not wake it again.
    if (node.heap_index == 0 && when < sleeping_until_) {
      sleeping_until_ = when;
      notify = true;
    }
  }
  // Outside the lock, so that the woken thread does not block on it at once. The service
  // outlives every task that arms a timer.
  if (notify) wake_.notify_one();
}

bool TimerService::disarm(TimerNode& node) noexcept {
  std::unique_lock<std::mutex> lock(mutex_);
  const bool removed = node.heap_index != TimerNode::kNotArmed;
  if (removed) {
    remove_at(node.heap_index);
    maybe_shrink();
  }
  // A callback that re-armed its own node is both armed and running: wait in that case too.
  if (running_ == &node && std::this_thread::get_id() != thread_id_) {
    ++disarm_waiters_;
    callback_done_.wait(lock, [&] { return running_ != &node; });
    --disarm_waiters_;
  }
  return removed;
}

std::size_t TimerService::armed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return heap_.size();
}

void TimerService::run() {
  // Linux thread names hold 15 characters.
  pthread_setname_np(pthread_self(), thread_name_.substr(0, 15).c_str());
  prctl(PR_SET_TIMERSLACK, kTimerSlackNs, 0, 0, 0);
  tl_timer_service = this;

  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    // Awake: arm() need not notify (min() is earlier than any deadline it could bring).
    sleeping_until_ = TimerTimePoint::min();
    if (heap_.empty() || heap_[0].when == TimerTimePoint::max()) {
      sleeping_until_ = TimerTimePoint::max();
      wake_.wait(lock);
      continue;
    }
    const TimerTimePoint now = TimerClock::now();
    if (heap_[0].when > now) {
      sleeping_until_ = heap_[0].when;
      wake_.wait_until(lock, sleeping_until_);
      continue;
    }
    // Run every node due by `now`, earliest first, one at a time (see the protocol).
    do {
      TimerNode* node = heap_[0].node;
      remove_at(0);
      running_ = node;
      lock.unlock();
      node->fire(node);
      lock.lock();
      running_ = nullptr;
      if (disarm_waiters_ != 0) callback_done_.notify_all();
    } while (!heap_.empty() && heap_[0].when <= now);
    maybe_shrink();
  }
}

void TimerService::place(std::size_t i, const Entry& e) noexcept {
  heap_[i] = e;
  e.node->heap_index = i;
}

void TimerService::sift_up(std::size_t i, Entry e) noexcept {
  while (i > 0) {
    const std::size_t parent = parent_of(i);
    if (!(e.when < heap_[parent].when)) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, e);
}

void TimerService::sift_down(std::size_t i, Entry e) noexcept {
  const std::size_t n = heap_.size();
  for (;;) {
    const std::size_t first = first_child_of(i);
    if (first >= n) break;
    const std::size_t end = std::min(first + kArity, n);
    std::size_t best = first;
    for (std::size_t c = first + 1; c < end; ++c)
      if (heap_[c].when < heap_[best].when) best = c;
    if (!(heap_[best].when < e.when)) break;
    place(i, heap_[best]);
    i = best;
  }
  place(i, e);
}

void TimerService::remove_at(std::size_t i) noexcept {
  heap_[i].node->heap_index = TimerNode::kNotArmed;
  const Entry last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;  // it was the last entry
  if (i > 0 && last.when < heap_[parent_of(i)].when) sift_up(i, last);
  else sift_down(i, last);
}

void TimerService::maybe_shrink() noexcept {
  const std::size_t capacity = heap_.capacity();
  if (capacity <= kMinRetainedCapacity || heap_.size() >= capacity / 4) return;
  // Half full after shrinking: the next growth is as far away as the next shrink, so the
  // copies cost O(1) per arm or disarm, amortised.
  try {
    std::vector<Entry> smaller;
    smaller.reserve(std::max(heap_.size() * 2, kMinRetainedCapacity));
    smaller.assign(heap_.begin(), heap_.end());  // indices unchanged
    heap_.swap(smaller);
  } catch (const std::bad_alloc&) {
    // Keeping the larger array is always correct.
  }
}

TimerService& timer_service(Scheduler& s) noexcept { return s.timers(); }

TimerService& current_timer_service(const char* what) {
  Worker* w = tl_worker;
  if (w == nullptr)
    throw UsageError(std::string(what) + " must be awaited from a task running on a weft runtime");
  return timer_service(w->scheduler);
}

}  // namespace weft::detail
